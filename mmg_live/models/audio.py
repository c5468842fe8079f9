"""AST-style audio transformer over log-mel filterbank patches."""

from __future__ import annotations

import torch
from torch import nn

from mmg_live.models.layers import TokenTransformer


class ASTEncoder(nn.Module):
    """Audio Spectrogram Transformer: ``[B, F, n_mels]`` fbank → patch tokens + pooled.

    ``stem="patch"`` (AST): ``patch × patch`` patches over (mel, time) with the given strides,
    embedded linearly. ``stem="cnn"``: a 2-D CNN (3×3 conv → BatchNorm → GELU → 2×2 max-pool,
    ``cnn_stages`` times, widths ``cnn_width``, twice that, …, then ``dim``) whose output
    positions are the tokens, so each token sees local spectro-temporal shape before attention
    (the hybrid that let the lite IMU encoder learn from few recordings; ``patch``/``stride``
    unused then). ``cnn_strided_first`` makes the first stage a 4×4 stride-2 convolution: no
    full-resolution map to normalise, activate and pool, which is most of the stem's time.
    """

    def __init__(self, num_frames: int, n_mels: int = 128, patch: int = 16,
                 stride: tuple[int, int] = (16, 16), dim: int = 768, depth: int = 12,
                 heads: int = 12, mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "cls",
                 stem: str = "patch", cnn_stages: int = 4, cnn_width: int = 32,
                 cnn_strided_first: bool = False) -> None:
        super().__init__()
        if stem == "patch":
            self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=stride)
            grid_f = (n_mels - patch) // stride[0] + 1
            grid_t = (num_frames - patch) // stride[1] + 1
            if grid_f < 1 or grid_t < 1:
                raise ValueError(f"AST: {num_frames} frames × {n_mels} mels is smaller than one {patch}² patch")
        elif stem == "cnn":
            grid_f, grid_t = n_mels >> cnn_stages, num_frames >> cnn_stages
            if cnn_stages < 1 or grid_f < 1 or grid_t < 1:
                raise ValueError(f"AST: {num_frames} frames × {n_mels} mels is too small for {cnn_stages} CNN stages")
            widths = [1] + [min(cnn_width << i, dim) for i in range(cnn_stages - 1)] + [dim]
            stages = [_conv_bn_pool(a, b) for a, b in zip(widths[:-1], widths[1:])]
            if cnn_strided_first:
                stages[0] = _strided_conv_bn(widths[0], widths[1])
            self.patch_embed = nn.Sequential(*stages)
        else:
            raise ValueError(f"AST stem must be 'patch' or 'cnn', got {stem!r}")
        self.backbone = TokenTransformer(grid_f * grid_t, dim, depth, heads, mlp_ratio, dropout, pool)
        self.dim = dim
        self.grid = (grid_f, grid_t)  # tokens along (mel, time)

    def forward(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = fbank.transpose(1, 2).unsqueeze(1)  # [B, 1, mels, frames]
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.backbone(patches)


def _conv_bn_pool(c_in: int, c_out: int) -> nn.Sequential:
    """One stage of the ``cnn`` stem: both axes halve, channels become ``c_out``."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.GELU(), nn.MaxPool2d(2))


def _strided_conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """A cheaper first stage: a 4×4 stride-2 convolution halves both axes (floor, as the max-pool
    does) without a full-resolution activation map to normalise, activate and pool."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.GELU())
