"""The MMG model: per-modality encoders → shared embedding space → any-subset fusion → classifier."""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from mmg_common import MODALITIES
from mmg_live.models.fusion import build_fusion
from mmg_live.models.registry import MMGConfig, build_encoder

T = TypeVar("T")


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
    """Which modalities each part has actually been trained on (saved in checkpoints).

    ``classifier_modalities`` are the modalities the base classifier was trained to read
    through the fusion; a modality added later (e.g. an audio entry trained on another data
    set for custom actions only) is in ``fusion`` but not here, and the live engine then
    leaves it out of the base-class prediction. Empty means "as ``fusion``" (older files).
    """

    encoders: list[str] = field(default_factory=list)
    fusion: list[str] = field(default_factory=list)
    classifier: bool = False
    classifier_modalities: list[str] = field(default_factory=list)

    def classifier_inputs(self) -> list[str]:
        """Modalities the base classifier may see (none without a trained classifier)."""
        if not self.classifier:
            return []
        return list(self.classifier_modalities or self.fusion)

    def to_dict(self) -> dict:
        return {"encoders": sorted(self.encoders), "fusion": sorted(self.fusion), "classifier": self.classifier,
                "classifier_modalities": sorted(self.classifier_modalities)}

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainedParts":
        return cls(list(values.get("encoders", [])), list(values.get("fusion", [])),
                   bool(values.get("classifier", False)), list(values.get("classifier_modalities", [])))


def _build_seeded(base_seed: int, part: str, make: Callable[[], T]) -> T:
    """``make()`` with the CPU generator seeded from ``(base_seed, part)``; the generator is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((base_seed * 1_000_003 + zlib.crc32(part.encode())) % (2**63 - 1))
        return make()


class MMGModel(nn.Module):
    """Encoders for the configured modalities, projection heads, fusion and classifiers."""

    def __init__(self, config: MMGConfig, class_names: Sequence[str]) -> None:
        super().__init__()
        if not class_names:
            raise ValueError("MMGModel needs at least one class name")
        self.config = config
        self.class_names = list(class_names)
        self.modalities = [m for m in MODALITIES if m in config.encoders]
        # One draw from the global generator, then every part is initialised from its own
        # seed derived from its name: torch.manual_seed still fixes the whole model, but one
        # part's size (say a different audio encoder) no longer shifts the others' init.
        base_seed = int(torch.randint(0, 2**31 - 1, (1,)))

        seeded = functools.partial(_build_seeded, base_seed)

        encoders = {m: seeded(f"encoders.{m}", lambda m=m: build_encoder(
            config.encoders[m]["kind"], config.specs[m],
            **{k: v for k, v in config.encoders[m].items() if k != "kind"})) for m in self.modalities}
        dims = {m: encoders[m].dim for m in self.modalities}
        fusion_kwargs = {k: v for k, v in config.fusion.items() if k != "kind"}
        kind = config.fusion.get("kind", "attention")
        d = config.embed_dim
        # Registration order is unchanged (optimizer states in older checkpoints follow it).
        self.encoders = nn.ModuleDict(encoders)
        # "mean" fusion averages the unit-length shared-space embeddings (no parameters): what
        # a classifier learns on one modality then applies to any aligned one (zero-shot).
        self.fusion = None if kind == "mean" else seeded("fusion", lambda: build_fusion(kind, dims, **fusion_kwargs))
        self.projections = nn.ModuleDict(
            {m: seeded(f"projections.{m}", lambda m=m: nn.Linear(dims[m], d)) for m in self.modalities})
        self.fused_projection = (nn.Identity() if self.fusion is None
                                 else seeded("fused_projection", lambda: nn.Linear(self.fusion.dim, d)))
        self.classifier = seeded("classifier", lambda: nn.Linear(d, len(self.class_names)))
        self.unimodal_heads = nn.ModuleDict(
            {m: seeded(f"unimodal_heads.{m}", lambda m=m: nn.Linear(d, len(self.class_names)))
             for m in self.modalities})
        self.trained = TrainedParts()
        # Mean fusion with ``"centre": true``: each modality's unit embedding minus that modality's
        # mean direction over the training clips, turned by its orthogonal map onto a reference
        # modality (both set by a recipe's "centre" stage), then put back on the sphere. Aligned
        # modalities still sit in separate cones of the shared space (the modality gap); laying the
        # cones onto each other brings a prototype from one modality closer to queries from another.
        if self.fusion is None and bool(config.fusion.get("centre", False)):
            self.register_buffer("modality_centres", torch.zeros(len(self.modalities), d))
            self.register_buffer("modality_rotations", torch.eye(d).repeat(len(self.modalities), 1, 1))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def centred(self) -> bool:
        """Whether mean fusion subtracts per-modality centres (``fusion: {"kind": "mean", "centre": true}``)."""
        return hasattr(self, "modality_centres")

    def set_modality_centres(self, centres: Mapping[str, torch.Tensor],
                             rotations: Mapping[str, torch.Tensor] | None = None) -> None:
        """Store each modality's mean unit embedding (``[embed_dim]``) and, optionally, its
        orthogonal map (``[embed_dim, embed_dim]``, applied as ``x @ R``) for centred mean fusion."""
        if not self.centred:
            raise ValueError("modality centres need mean fusion with \"centre\": true in the model config "
                             f"(this model's fusion: {self.config.fusion})")
        rotations = dict(rotations or {})
        unknown = (set(centres) | set(rotations)) - set(self.modalities)
        if unknown:
            raise ValueError(f"centres for modalities this model has no encoder for: {sorted(unknown)}")
        for values, store, what in ((centres, self.modality_centres, "centre"),
                                    (rotations, self.modality_rotations, "rotation")):
            for m, value in values.items():
                row = self.modalities.index(m)
                if tuple(value.shape) != tuple(store[row].shape):
                    raise ValueError(f"{what} of {m!r} has shape {tuple(value.shape)}, expected "
                                     f"{tuple(store[row].shape)}")
        for m, centre in centres.items():
            self.modality_centres[self.modalities.index(m)] = centre.detach().to(self.modality_centres)
        for m, rotation in rotations.items():
            self.modality_rotations[self.modalities.index(m)] = rotation.detach().to(self.modality_rotations)

    def unit_embedding(self, enc: "Encoded", modality: str) -> torch.Tensor:
        """One modality's shared-space embedding on the unit sphere (centred when the model is);
        rows where the modality is absent are zero."""
        unit = F.normalize(enc.embeddings[modality], dim=-1)
        if self.centred:
            row = self.modalities.index(modality)
            centre = self.modality_centres[row]
            # an all-zero centre is one not estimated yet (stages before the centre stage): left
            # out rather than subtracted, so those stages compute exactly what uncentred fusion does
            if bool(centre.any()):
                unit = F.normalize((unit - centre) @ self.modality_rotations[row].to(unit.dtype), dim=-1)
        return unit * enc.present[modality].to(unit.dtype).unsqueeze(1)

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

    def encode_batch(self, inputs: Mapping[str, torch.Tensor],
                     present: Mapping[str, torch.Tensor] | None = None) -> "Encoded":
        """Run the encoders of the present modalities (present rows only) and project them."""
        masks = self._presence(inputs, present)
        enc = Encoded()
        for m in self.modalities:
            if m not in inputs or not bool(masks[m].any()):
                continue
            toks, pool = self.encode(m, inputs[m], masks[m])
            keep = masks[m].to(pool.dtype).unsqueeze(1)
            enc.tokens[m], enc.pooled[m], enc.present[m] = toks, pool, masks[m]
            enc.embeddings[m] = self.projections[m](pool) * keep
        return enc

    def fuse(self, enc: "Encoded", modalities: Sequence[str] | None = None) -> torch.Tensor:
        """Fused embedding of the encoded modalities (or of the given subset of them).

        Samples with none of the chosen modalities present get a zero row.
        """
        chosen = [m for m in enc.present if modalities is None or m in modalities]
        if not chosen:
            raise ValueError(f"fuse: none of {list(modalities or [])} was encoded")
        present = {m: enc.present[m] for m in chosen}
        if self.fusion is None:  # "mean": average of the present shared-space embeddings, each
            # on the unit sphere first: alignment matches directions, not lengths, so a classifier
            # fitted on one modality's unit vectors reads another modality's alike (zero-shot)
            stacked = torch.stack([self.unit_embedding(enc, m) for m in chosen])
            counts = torch.stack([present[m] for m in chosen]).sum(0).clamp(min=1).unsqueeze(1)
            return stacked.sum(0) / counts.to(stacked.dtype)
        any_present = torch.stack(list(present.values())).any(0)
        if bool(any_present.all()):
            return self.fused_projection(self.fusion(
                {m: enc.tokens[m] for m in chosen}, {m: enc.pooled[m] for m in chosen}, present))
        idx = any_present.nonzero().flatten()
        fused = self.fused_projection(self.fusion(
            {m: enc.tokens[m].index_select(0, idx) for m in chosen},
            {m: enc.pooled[m].index_select(0, idx) for m in chosen},
            {m: present[m].index_select(0, idx) for m in chosen}))
        return fused.new_zeros((any_present.shape[0], fused.shape[1])).index_copy(0, idx, fused)

    def class_probabilities(self, enc: "Encoded", modalities: Sequence[str] | None = None) -> torch.Tensor:
        """Base-class probabilities ``[B, C]`` from the encoded modalities (or the given subset).

        The fused classifier's softmax; when ``config.classifier == "ensemble"``, the
        normalised geometric mean of it and the unimodal heads of the chosen modalities (late
        fusion: each head only counts for the rows where its modality is present). Only
        modalities the classifier was trained on should be passed (``trained.classifier_inputs()``).
        """
        chosen = [m for m in enc.present if modalities is None or m in modalities]
        return self.probabilities_of(self.fuse(enc, chosen), {m: enc.embeddings[m] for m in chosen},
                                     {m: enc.present[m] for m in chosen})

    def probabilities_of(self, fused: torch.Tensor, embeddings: Mapping[str, torch.Tensor],
                         present: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Base-class probabilities ``[B, C]`` of a fused embedding, with (``ensemble``) the unimodal
        heads of ``embeddings`` where ``present`` (bool ``[B]`` per modality) says they count."""
        log_p = torch.log_softmax(self.classifier(fused).float(), dim=-1)
        if self.config.classifier != "ensemble":
            return log_p.exp()
        total, count = log_p, torch.ones_like(log_p[:, :1])
        for m, embedding in embeddings.items():
            weight = present[m].to(log_p.dtype).unsqueeze(1)
            head = torch.log_softmax(self.unimodal_heads[m](embedding).float(), dim=-1)
            total = total + weight * head
            count = count + weight
        return torch.softmax(total / count, dim=-1)

    def forward(self, inputs: Mapping[str, torch.Tensor],
                present: Mapping[str, torch.Tensor] | None = None) -> MMGOutput:
        """Embed, fuse and classify any non-empty subset of modalities.

        Args:
            inputs: preprocessed batches per modality (see :mod:`mmg_live.modalities`); a
                modality not in the dict is absent for every sample.
            present: optional per-sample bool masks ``[B]``; rows where a modality is absent
                are never seen by its encoder and do not influence the output.
        """
        enc = self.encode_batch(inputs, present)
        fused = self.fuse(enc)
        uni_logits = {m: self.unimodal_heads[m](e) for m, e in enc.embeddings.items()}
        return MMGOutput(enc.embeddings, fused, self.classifier(fused), uni_logits, enc.present, enc.pooled)


@dataclass
class Encoded:
    """Per-modality encoder outputs of one batch (only modalities present somewhere in it)."""

    tokens: dict[str, torch.Tensor] = field(default_factory=dict)
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    present: dict[str, torch.Tensor] = field(default_factory=dict)

    def detach(self) -> "Encoded":
        """The same outputs cut from the encoders' graph (a head trained on them leaves the encoders alone)."""
        cut = lambda d: {m: x.detach() for m, x in d.items()}  # noqa: E731
        return Encoded(cut(self.tokens), cut(self.pooled), cut(self.embeddings), dict(self.present))


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
