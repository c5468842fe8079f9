"""IMU transformer over patches of the 6-axis accel+gyro signal."""

from __future__ import annotations

import torch
from torch import nn

from mmg_live.models.layers import TokenTransformer


class IMUTransformer(nn.Module):
    """``[B, 6, R]`` → tokens of non-overlapping ``patch``-sample patches + pooled class token."""

    def __init__(self, num_samples: int, channels: int = 6, patch: int = 10, dim: int = 128,
                 depth: int = 3, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if num_samples < patch:
            raise ValueError(f"IMU: {num_samples} samples is shorter than one {patch}-sample patch")
        self.patch_embed = nn.Conv1d(channels, dim, kernel_size=patch, stride=patch)
        self.backbone = TokenTransformer(num_samples // patch, dim, depth, heads, mlp_ratio, dropout)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches = self.patch_embed(x).transpose(1, 2)
        return self.backbone(patches)
