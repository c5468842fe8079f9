"""Building blocks shared by the encoders and the fusion module."""

from __future__ import annotations

import torch
from torch import nn


def transformer_encoder(dim: int, depth: int, heads: int, mlp_ratio: float = 4.0,
                        dropout: float = 0.0) -> nn.TransformerEncoder:
    """Pre-norm transformer encoder (ViT style), batch-first, GELU."""
    layer = nn.TransformerEncoderLayer(
        d_model=dim, nhead=heads, dim_feedforward=int(dim * mlp_ratio), dropout=dropout,
        activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)


class TokenTransformer(nn.Module):
    """Class token + learned positions + transformer over a fixed-length token sequence.

    Returns ``(tokens [B,N,D], pooled [B,D])`` where pooled is the normalised class token
    (``pool="cls"``) or the mean of the output tokens (``pool="mean"``).
    """

    def __init__(self, num_tokens: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, pool: str = "cls") -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.pool = pool
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.encoder = transformer_encoder(dim, depth, heads, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        x = torch.cat([cls, patches], dim=1) + self.pos_embed
        x = self.norm(self.encoder(x))
        return x[:, 1:], (x[:, 0] if self.pool == "cls" else x[:, 1:].mean(dim=1))
