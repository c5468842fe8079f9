"""Fusion modules that accept ANY subset of modalities, per sample.

Inputs are, per modality present somewhere in the batch, its tokens ``[B, N_m, D_m]``, pooled
embedding ``[B, D_m]`` and a presence mask ``[B]``. An absent modality contributes nothing: its
tokens are excluded by the attention mask (attention fusion) or its slot is zeroed (MLP).
"""

from __future__ import annotations

import torch
from torch import nn

from mmg_live.models.layers import transformer_encoder


class AttentionFusion(nn.Module):
    """A transformer over the tokens of the present modalities plus a fusion token."""

    def __init__(self, input_dims: dict[str, int], dim: int = 128, depth: int = 2, heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.token_proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in input_dims.items()})
        self.modality_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(1, 1, dim) * 0.02) for m in input_dims}
        )
        self.fusion_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.encoder = transformer_encoder(dim, depth, heads, mlp_ratio, dropout)
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, tokens: dict[str, torch.Tensor], pooled: dict[str, torch.Tensor],
                present: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = next(iter(present.values())).shape[0]
        parts = [self.fusion_token.expand(batch, -1, -1)]
        masks = [torch.zeros(batch, 1, dtype=torch.bool, device=parts[0].device)]
        for modality, toks in tokens.items():
            parts.append(self.token_proj[modality](toks) + self.modality_embed[modality])
            masks.append((~present[modality]).unsqueeze(1).expand(-1, toks.shape[1]))
        x = torch.cat(parts, dim=1)
        padding = torch.cat(masks, dim=1)
        out = self.encoder(x, src_key_padding_mask=padding)
        return self.norm(out[:, 0])


class MLPFusion(nn.Module):
    """Ablation baseline: concatenated pooled embeddings (absent ones zeroed) + presence flags → MLP."""

    def __init__(self, input_dims: dict[str, int], dim: int = 128, hidden: int = 256,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.order = list(input_dims)
        self.slot_proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in input_dims.items()})
        self.mlp = nn.Sequential(
            nn.Linear(dim * len(self.order) + len(self.order), hidden), nn.GELU(),
            nn.Dropout(dropout), nn.Linear(hidden, dim),
        )
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, tokens: dict[str, torch.Tensor], pooled: dict[str, torch.Tensor],
                present: dict[str, torch.Tensor]) -> torch.Tensor:
        ref = next(iter(pooled.values()))
        batch = ref.shape[0]
        slots, flags = [], []
        for modality in self.order:
            if modality in pooled:
                mask = present[modality].to(ref.dtype).unsqueeze(1)
                slots.append(self.slot_proj[modality](pooled[modality]) * mask)
                flags.append(mask)
            else:
                slots.append(ref.new_zeros(batch, self.dim))
                flags.append(ref.new_zeros(batch, 1))
        return self.norm(self.mlp(torch.cat(slots + flags, dim=1)))


FUSIONS = {"attention": AttentionFusion, "mlp": MLPFusion}


def build_fusion(kind: str, input_dims: dict[str, int], **kwargs: object) -> nn.Module:
    """Build a fusion module by name (``attention`` or ``mlp``; ``mean`` is built into MMGModel)."""
    if kind not in FUSIONS:
        raise ValueError(f"unknown fusion {kind!r}; expected one of {sorted(FUSIONS) + ['mean']}")
    return FUSIONS[kind](input_dims, **kwargs)
