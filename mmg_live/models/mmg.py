"""The MMG model: per-modality encoders → shared embedding space → any-subset fusion → classifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from mmg_live.modalities import MODALITY_NAMES
from mmg_live.models.fusion import build_fusion
from mmg_live.models.registry import MMGConfig, build_encoder


@dataclass
class MMGOutput:
    """What :meth:`MMGModel.forward` returns.

    ``embeddings[m]`` is modality m's projection into the shared space (zero rows where absent);
    ``fused`` is the fused embedding in the same space; ``logits`` the classifier on it;
    ``unimodal_logits[m]`` each encoder's own head; ``present[m]`` the per-sample masks used.
    """

    embeddings: dict[str, torch.Tensor]
    fused: torch.Tensor
    logits: torch.Tensor
    unimodal_logits: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TrainedParts:
    """Which modalities each part has actually been trained on (saved in checkpoints)."""

    encoders: list[str] = field(default_factory=list)
    fusion: list[str] = field(default_factory=list)
    classifier: bool = False

    def to_dict(self) -> dict:
        return {"encoders": sorted(self.encoders), "fusion": sorted(self.fusion), "classifier": self.classifier}

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainedParts":
        return cls(list(values.get("encoders", [])), list(values.get("fusion", [])),
                   bool(values.get("classifier", False)))


class MMGModel(nn.Module):
    """Encoders for the configured modalities, projection heads, fusion and classifiers."""

    def __init__(self, config: MMGConfig, class_names: Sequence[str]) -> None:
        super().__init__()
        if not class_names:
            raise ValueError("MMGModel needs at least one class name")
        self.config = config
        self.class_names = list(class_names)
        self.modalities = [m for m in MODALITY_NAMES if m in config.encoders]
        self.encoders = nn.ModuleDict({
            m: build_encoder(config.encoders[m]["kind"], config.specs[m],
                             **{k: v for k, v in config.encoders[m].items() if k != "kind"})
            for m in self.modalities
        })
        dims = {m: self.encoders[m].dim for m in self.modalities}
        fusion_kwargs = {k: v for k, v in config.fusion.items() if k != "kind"}
        self.fusion = build_fusion(config.fusion.get("kind", "attention"), dims, **fusion_kwargs)
        d = config.embed_dim
        self.projections = nn.ModuleDict({m: nn.Linear(dims[m], d) for m in self.modalities})
        self.fused_projection = nn.Linear(self.fusion.dim, d)
        self.classifier = nn.Linear(d, len(self.class_names))
        self.unimodal_heads = nn.ModuleDict({m: nn.Linear(d, len(self.class_names)) for m in self.modalities})
        self.trained = TrainedParts()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _presence(self, inputs: Mapping[str, torch.Tensor],
                  present: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        unknown = set(inputs) - set(self.modalities)
        if unknown:
            raise ValueError(f"inputs for modalities this model has no encoder for: {sorted(unknown)}")
        if not inputs:
            raise ValueError("MMGModel.forward needs at least one modality")
        sizes = {m: x.shape[0] for m, x in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"batch sizes differ between modalities: {sizes}")
        batch = next(iter(sizes.values()))
        masks = {}
        for m in inputs:
            mask = None if present is None else present.get(m)
            if mask is None:
                mask = torch.ones(batch, dtype=torch.bool, device=inputs[m].device)
            masks[m] = mask.to(device=inputs[m].device, dtype=torch.bool)
        any_present = torch.stack(list(masks.values())).any(dim=0)
        if not bool(any_present.all()):
            rows = (~any_present).nonzero().flatten().tolist()
            raise ValueError(f"samples {rows} have no modality present")
        return masks

    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one encoder on the present rows only; absent rows come back as zeros."""
        encoder = self.encoders[modality]
        if bool(mask.all()):
            return encoder(x)
        idx = mask.nonzero().flatten()
        tokens, pooled = encoder(x.index_select(0, idx))
        batch = x.shape[0]
        tokens = tokens.new_zeros((batch,) + tokens.shape[1:]).index_copy(0, idx, tokens)
        pooled = pooled.new_zeros((batch,) + pooled.shape[1:]).index_copy(0, idx, pooled)
        return tokens, pooled

    def forward(self, inputs: Mapping[str, torch.Tensor],
                present: Mapping[str, torch.Tensor] | None = None) -> MMGOutput:
        """Embed, fuse and classify any non-empty subset of modalities.

        Args:
            inputs: preprocessed batches per modality (see :mod:`mmg_live.modalities`); a
                modality not in the dict is absent for every sample.
            present: optional per-sample bool masks ``[B]``; rows where a modality is absent
                are never seen by its encoder and do not influence the output.
        """
        masks = self._presence(inputs, present)
        tokens, pooled, embeddings, uni_logits, used = {}, {}, {}, {}, {}
        for m in self.modalities:
            if m not in inputs or not bool(masks[m].any()):
                continue
            toks, pool = self.encode(m, inputs[m], masks[m])
            keep = masks[m].to(pool.dtype).unsqueeze(1)
            tokens[m], pooled[m], used[m] = toks, pool, masks[m]
            embeddings[m] = self.projections[m](pool) * keep
            uni_logits[m] = self.unimodal_heads[m](embeddings[m])
        fused = self.fused_projection(self.fusion(tokens, pooled, used))
        return MMGOutput(embeddings, fused, self.classifier(fused), uni_logits, used, pooled)


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` force one (clear error if absent)."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA device is available")
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {preference!r}")
    return torch.device(preference)


def build_model(config: MMGConfig | str, class_names: Sequence[str],
                device: str | torch.device = "cpu") -> MMGModel:
    """Build an untrained :class:`MMGModel` from a config or a registered config name."""
    from mmg_live.models.registry import get_config

    cfg = get_config(config) if isinstance(config, str) else config
    model = MMGModel(cfg, class_names)
    return model.to(select_device(device) if isinstance(device, str) else device)
