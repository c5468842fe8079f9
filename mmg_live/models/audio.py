"""AST-style audio transformer over log-mel filterbank patches."""

from __future__ import annotations

import torch
from torch import nn

from mmg_live.models.layers import TokenTransformer


class ASTEncoder(nn.Module):
    """Audio Spectrogram Transformer: ``[B, F, n_mels]`` fbank → patch tokens + pooled.

    Patches are ``patch × patch`` over (mel, time) with the given strides, as in AST.
    """

    def __init__(self, num_frames: int, n_mels: int = 128, patch: int = 16,
                 stride: tuple[int, int] = (16, 16), dim: int = 768, depth: int = 12,
                 heads: int = 12, mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "cls") -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=stride)
        grid_f = (n_mels - patch) // stride[0] + 1
        grid_t = (num_frames - patch) // stride[1] + 1
        if grid_f < 1 or grid_t < 1:
            raise ValueError(f"AST: {num_frames} frames × {n_mels} mels is smaller than one {patch}² patch")
        self.backbone = TokenTransformer(grid_f * grid_t, dim, depth, heads, mlp_ratio, dropout, pool)
        self.dim = dim

    def forward(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = fbank.transpose(1, 2).unsqueeze(1)  # [B, 1, mels, frames]
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.backbone(patches)
