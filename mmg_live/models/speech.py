"""A small trainable head over the frozen speech embedding (:mod:`mmg_live.speech_embedding`)."""

from __future__ import annotations

import torch
from torch import nn


class SpeechProjection(nn.Module):
    """``[B, in_dim]`` speech embedding → ``(tokens [B, 1, dim], pooled [B, dim])``.

    LayerNorm, then ``hidden`` > 0: Linear → GELU → dropout → Linear (an MLP); ``hidden`` = 0:
    dropout → Linear (a linear probe). The embedding is one vector per window, so the encoder
    gives the fusion one token, equal to the pooled output.
    """

    def __init__(self, in_dim: int = 2048, dim: int = 192, hidden: int = 512, dropout: float = 0.1,
                 input_dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(in_dim), nn.Dropout(input_dropout)]
        if hidden > 0:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)]
        else:
            layers += [nn.Dropout(dropout), nn.Linear(in_dim, dim)]
        self.net = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 2:
            raise ValueError(f"speech projection: expected [B, {self.net[0].normalized_shape[0]}], "
                             f"got {tuple(x.shape)}")
        pooled = self.net(x)
        return pooled.unsqueeze(1), pooled
