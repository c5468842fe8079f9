"""Custom actions as prototypes in the model's shared embedding space.

A :class:`PrototypeBank` holds a few recorded examples per custom action. Each example is
embedded once per non-empty subset of the modalities it was recorded with (the L2-normalised
fused embedding of that subset, :func:`embed`, which the trainer uses too), so an action enrolled
from video+IMU can later be recognised from the IMU alone, from video alone, or from both.

Scoring a query encoded with modalities ``Q`` (see :meth:`PrototypeBank.classify`): for each
custom action ``c`` the subset ``S_c`` is the largest subset of ``Q`` that ``c``'s examples were
embedded with; its prototype is the mean of those examples' ``S_c`` embeddings, and ``d_c`` is
the squared Euclidean distance between the query's ``S_c`` embedding and that prototype
(on the unit sphere ``d = 2 - 2 cos`` for a single example).

Mixing with the base classes (:func:`combine`), documented once here:

* custom probabilities ``p_custom = softmax(-d / temperature)`` over the custom actions;
* a match gate ``g = sigmoid((radius - min_c d_c) / temperature)``: how sure we are that the
  query is one of the custom actions at all (``~1`` well inside ``radius``, ``~0`` far outside);
* with a trained classifier, the ranked list is ``(1 - g) * p_base`` for the base classes and
  ``g * p_custom`` for the custom ones (it still sums to 1);
* without one, only ``g * p_custom`` is listed and the remaining ``1 - g`` is unclaimed;
* the top entry is reported as ``"unknown"`` when its probability is below
  ``unknown_threshold``.

Files (:meth:`PrototypeBank.save`): one ``.safetensors`` file, never pickle; tensor
``example{i}/{subset}`` is example ``i``'s embedding for ``subset`` (e.g. ``imu+video``), and the
metadata key ``mmg_prototypes`` holds JSON with the action names, each example's modalities and
provenance, the scoring parameters, ``embed_dim`` and a fingerprint of the weights that produce
embeddings, so a bank made with another checkpoint is refused with a one-line error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmg_common import MODALITIES, one_line
from mmg_live.models.mmg import Encoded, MMGModel

FORMAT = "mmg-live-prototypes"
FORMAT_VERSION = 1
_META_KEY = "mmg_prototypes"
UNKNOWN = "unknown"
#: Parameters whose weights shape the embeddings (the classifier heads do not).
_EMBEDDING_PARTS = ("encoders.", "projections.", "fusion.", "fused_projection.")


class PrototypeError(ValueError):
    """A prototype bank that cannot be used or a bad request; the message is one line."""


def subset_key(modalities: Sequence[str]) -> str:
    """Canonical name of a modality subset: modalities in ``MODALITIES`` order joined by ``+``."""
    chosen = set(modalities)
    unknown = chosen - set(MODALITIES)
    if unknown:
        raise PrototypeError(f"unknown modalities {sorted(unknown)}; expected some of {list(MODALITIES)}")
    return "+".join(m for m in MODALITIES if m in chosen)


def nonempty_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``modalities`` (canonical order), smallest first."""
    ordered = [m for m in MODALITIES if m in set(modalities)]
    return [c for r in range(1, len(ordered) + 1) for c in itertools.combinations(ordered, r)]


def embed(model: MMGModel, enc: Encoded, modalities: Sequence[str]) -> torch.Tensor:
    """The L2-normalised fused embedding of a modality set (also what the trainer's prototypes use)."""
    return F.normalize(model.fuse(enc, list(modalities)), dim=-1)


def usable_modalities(model: MMGModel) -> list[str]:
    """Modalities whose encoder AND fusion were trained (per ``model.trained``), canonical order."""
    trained = set(model.trained.encoders) & set(model.trained.fusion) & set(model.modalities)
    return [m for m in MODALITIES if m in trained]


def model_fingerprint(model: MMGModel) -> str:
    """SHA-256 (first 16 hex digits) of the config name, embed_dim and embedding weights."""
    digest = hashlib.sha256(f"{model.config.name}|{model.config.embed_dim}".encode())
    for key, tensor in sorted(model.state_dict().items()):
        if not key.startswith(_EMBEDDING_PARTS):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(t.shape)).encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class CustomScores:
    """How a query compares with every custom action.

    Attributes:
        names: custom action names (bank order).
        distances: squared distance to each action's prototype (``inf`` when no example of the
            action shares a modality with the query).
        probs: ``softmax(-distances / temperature)`` (0 for ``inf`` distances).
        gate: probability that the query is a custom action at all (see module docstring).
        subsets: the modality subset each action was compared on (``""`` when none).
    """

    names: list[str]
    distances: np.ndarray
    probs: np.ndarray
    gate: float
    subsets: list[str] = field(default_factory=list)


@dataclass
class _Example:
    name: str
    modalities: tuple[str, ...]
    embeddings: dict[str, torch.Tensor]  # subset key -> [D] float32 CPU, L2-normalised
    meta: dict[str, Any] = field(default_factory=dict)


class PrototypeBank:
    """Custom actions enrolled from a few examples, matched from any modality subset.

    Args:
        model: the model whose shared embedding space the prototypes live in.
        temperature: softmax temperature over negative squared distances (and gate sharpness).
        radius: squared distance under which a query counts as a custom action (gate = 0.5 at
            exactly ``radius``; 0.5 means cosine 0.75 to a single example).
        unknown_threshold: the ranked list's top entry is reported as ``"unknown"`` below this.

    Thread-safety: every method may be called from any thread (one lock guards the examples);
    the model is only run for inference.
    """

    def __init__(self, model: MMGModel, temperature: float = 0.1, radius: float = 0.5,
                 unknown_threshold: float = 0.4) -> None:
        if not temperature > 0:
            raise PrototypeError(f"PrototypeBank: temperature must be > 0, got {temperature}")
        if not 0.0 <= unknown_threshold <= 1.0:
            raise PrototypeError(f"PrototypeBank: unknown_threshold must be in [0, 1], got {unknown_threshold}")
        self.model = model
        self.temperature = float(temperature)
        self.radius = float(radius)
        self.unknown_threshold = float(unknown_threshold)
        self.embed_dim = int(model.config.embed_dim)
        self._examples: list[_Example] = []
        self._lock = threading.RLock()
        self._fingerprint: str | None = None

    # ---- enrolment --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Custom action names in order of first enrolment."""
        with self._lock:
            return list(dict.fromkeys(e.name for e in self._examples))

    def counts(self) -> dict[str, int]:
        """Number of examples per custom action."""
        with self._lock:
            out: dict[str, int] = {}
            for e in self._examples:
                out[e.name] = out.get(e.name, 0) + 1
            return out

    def __len__(self) -> int:
        return len(self.names())

    def add_example(self, name: str, inputs: Mapping[str, torch.Tensor],
                    meta: Mapping[str, Any] | None = None) -> list[str]:
        """Enrol one example of action ``name`` from preprocessed tensors per modality.

        ``inputs[m]`` is one preprocessed window (``[...spec shape]`` or ``[1, ...]``). Only
        modalities the model was trained on (encoder and fusion) are used; the others are
        ignored. ``meta`` (JSON-serialisable, e.g. the session folder and time range the example
        came from) is stored with the example so it can be re-enrolled with a new checkpoint.
        Returns the subset keys stored.
        """
        return self.add_examples(name, [inputs], None if meta is None else [meta])[0]

    def add_examples(self, name: str, examples: Sequence[Mapping[str, torch.Tensor]],
                     metas: Sequence[Mapping[str, Any] | None] | None = None) -> list[list[str]]:
        """Enrol several examples of ``name`` at once (what the GUI's record flow does).

        Same rules as :meth:`add_example`, but examples with the same modalities are encoded as
        one batch and every subset of every example is fused in one batched call (presence
        masks select the subset per row), which is several times faster than one by one.
        All examples are checked before any is stored. Returns each example's subset keys.
        """
        self._check_name(name)
        if not examples:
            raise PrototypeError(f"add_examples({name!r}): no examples")
        metas = list(metas) if metas is not None else [None] * len(examples)
        if len(metas) != len(examples):
            raise PrototypeError(f"add_examples({name!r}): {len(metas)} metas for {len(examples)} examples")
        for meta in metas:
            if meta is not None:
                try:
                    json.dumps(dict(meta))
                except (TypeError, ValueError) as exc:
                    raise PrototypeError(f"add_example({name!r}): meta is not JSON-serialisable ({exc})") from None
        usable = usable_modalities(self.model)
        chosen = []
        for inputs in examples:
            picked = {m: x for m, x in inputs.items() if m in usable}
            if not picked:
                raise PrototypeError(
                    f"add_example({name!r}): none of {sorted(inputs)} is usable; the model's trained "
                    f"modalities (encoder and fusion) are {usable or 'none'}"
                )
            chosen.append(picked)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, picked in enumerate(chosen):
            groups.setdefault(tuple(m for m in MODALITIES if m in picked), []).append(i)
        embeddings: list[dict[str, torch.Tensor]] = [{} for _ in chosen]
        for mods, rows in groups.items():
            batch = {m: torch.cat([self._window(m, chosen[i][m]) for i in rows]) for m in mods}
            for subset, vectors in self._embed_subsets(batch, mods).items():
                for j, i in enumerate(rows):
                    embeddings[i][subset] = vectors[j]
        with self._lock:
            for i, emb in enumerate(embeddings):
                mods = tuple(m for m in MODALITIES if m in chosen[i])
                self._examples.append(_Example(name, mods, emb, dict(metas[i] or {})))
        return [list(emb) for emb in embeddings]

    def _embed_subsets(self, batch: Mapping[str, torch.Tensor], mods: Sequence[str]) -> dict[str, torch.Tensor]:
        """L2-normalised fused embeddings ``[n, d]`` of every non-empty subset of ``mods``."""
        subsets = nonempty_subsets(mods)
        n = next(iter(batch.values())).shape[0]
        with torch.inference_mode():
            enc = self.model.encode_batch(batch)
            reps = len(subsets)
            present = {m: torch.tensor([m in s for s in subsets for _ in range(n)], device=self.model.device)
                       for m in mods}
            tiled = Encoded(
                tokens={m: enc.tokens[m].repeat(reps, *([1] * (enc.tokens[m].dim() - 1))) for m in mods},
                pooled={m: enc.pooled[m].repeat(reps, 1) for m in mods},
                embeddings={m: enc.embeddings[m].repeat(reps, 1) * present[m].unsqueeze(1).to(enc.embeddings[m].dtype)
                            for m in mods},
                present=present,
            )
            fused = F.normalize(self.model.fuse(tiled, list(mods)), dim=-1).detach().float().cpu()
        return {subset_key(s): fused[k * n:(k + 1) * n].clone() for k, s in enumerate(subsets)}

    def rename(self, old: str, new: str) -> None:
        """Rename a custom action (merging into ``new`` if it already exists)."""
        with self._lock:
            if old not in self.names():
                raise PrototypeError(f"rename: no custom action {old!r}; actions are {self.names()}")
            self._check_name(new)
            for e in self._examples:
                if e.name == old:
                    e.name = new

    def remove(self, name: str) -> int:
        """Forget every example of action ``name``; returns how many were removed."""
        with self._lock:
            before = len(self._examples)
            self._examples = [e for e in self._examples if e.name != name]
            removed = before - len(self._examples)
        if not removed:
            raise PrototypeError(f"remove: no custom action {name!r}; actions are {self.names()}")
        return removed

    # ---- scoring ----------------------------------------------------------------------------

    def classify(self, enc_or_inputs: Encoded | Mapping[str, torch.Tensor],
                 modalities: Sequence[str] | None = None) -> CustomScores:
        """Distances and probabilities of every custom action for one query.

        ``enc_or_inputs`` is an :class:`Encoded` batch of one (as the engine has it) or
        preprocessed tensors per modality; ``modalities`` restricts the query to a subset of
        what was encoded (default: all of it).
        """
        enc = enc_or_inputs if isinstance(enc_or_inputs, Encoded) else self._encode(dict(enc_or_inputs))
        query = [m for m in MODALITIES if m in enc.present and (modalities is None or m in modalities)]
        with self._lock:
            names = self.names()
            examples = list(self._examples)
        distances = np.full(len(names), np.inf)
        subsets = [""] * len(names)
        cache: dict[str, torch.Tensor] = {}
        for i, name in enumerate(names):
            own = [e for e in examples if e.name == name]
            best: tuple[str, ...] = ()
            for e in own:
                shared = tuple(m for m in query if m in e.modalities)
                if len(shared) > len(best):
                    best = shared
            if not best:
                continue
            key = subset_key(best)
            if key not in cache:
                with torch.inference_mode():
                    cache[key] = embed(self.model, enc, best)[0].detach().float().cpu()
            proto = torch.stack([e.embeddings[key] for e in own if key in e.embeddings]).mean(0)
            distances[i] = float(((cache[key] - proto) ** 2).sum())
            subsets[i] = key
        probs = np.zeros(len(names))
        finite = np.isfinite(distances)
        if finite.any():
            logits = -distances[finite] / self.temperature
            logits -= logits.max()
            e = np.exp(logits)
            probs[finite] = e / e.sum()
            d_min = float(distances[finite].min())
            gate = 1.0 / (1.0 + math.exp(-(self.radius - d_min) / self.temperature))
        else:
            gate = 0.0
        return CustomScores(names, distances, probs, gate, subsets)

    # ---- persistence ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank atomically to ``path`` (``.safetensors``); returns the path."""
        path = Path(path)
        with self._lock:
            examples = list(self._examples)
        tensors = {f"example{i}/{key}": vec.contiguous()
                   for i, e in enumerate(examples) for key, vec in e.embeddings.items()}
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "embed_dim": self.embed_dim, "model_config": self.model.config.name,
            "model_fingerprint": self.fingerprint(),
            "temperature": self.temperature, "radius": self.radius, "unknown_threshold": self.unknown_threshold,
            "examples": [{"name": e.name, "modalities": list(e.modalities), "subsets": sorted(e.embeddings),
                          "meta": e.meta} for e in examples],
        }
        from mmg_live.checkpoint import write_safetensors_atomic

        return write_safetensors_atomic(path, tensors, {_META_KEY: json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike, model: MMGModel) -> "PrototypeBank":
        """Read a bank saved by :meth:`save` for ``model``; :class:`PrototypeError` names the problem."""
        from mmg_live.checkpoint import read_safetensors_json

        path = Path(path)
        raw, tensors = read_safetensors_json(path, _META_KEY, "prototype", PrototypeError, with_tensors=True)
        if raw.get("format") != FORMAT:
            raise PrototypeError(f"{path}: not an mmg-live prototype bank (format {raw.get('format')!r})")
        if raw.get("format_version") != FORMAT_VERSION:
            raise PrototypeError(f"{path}: prototype format version {raw.get('format_version')} "
                                 f"(this mmg-live reads {FORMAT_VERSION})")
        dim = int(model.config.embed_dim)
        if raw.get("embed_dim") != dim:
            raise PrototypeError(f"{path}: embeddings are {raw.get('embed_dim')}-d but the model's are {dim}-d "
                                 f"(made for another model; re-enrol the examples)")
        try:
            bank = cls(model, float(raw["temperature"]), float(raw["radius"]), float(raw["unknown_threshold"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PrototypeError(f"{path}: invalid prototype parameters ({one_line(exc, 200)})") from None
        if raw.get("model_fingerprint") != bank.fingerprint():
            raise PrototypeError(
                f"{path}: made with a different checkpoint (model {raw.get('model_config')!r} fingerprint "
                f"{raw.get('model_fingerprint')}, this model {model.config.name!r} {bank.fingerprint()}); "
                f"re-enrol the examples"
            )
        try:
            for i, item in enumerate(raw["examples"]):
                mods = tuple(m for m in MODALITIES if m in item["modalities"])
                embeddings = {}
                for key in item["subsets"]:
                    vec = tensors.get(f"example{i}/{key}")
                    if vec is None:
                        raise ValueError(f"example {i} ({item['name']!r}) lacks its {key} embedding")
                    if tuple(vec.shape) != (dim,) or not bool(torch.isfinite(vec).all()):
                        raise ValueError(f"example {i} ({item['name']!r}) {key} embedding has shape "
                                         f"{tuple(vec.shape)} or non-finite values (expected finite [{dim}])")
                    embeddings[subset_key(key.split("+"))] = vec.float()
                bank._examples.append(_Example(str(item["name"]), mods, embeddings, dict(item.get("meta", {}))))
        except (KeyError, TypeError, ValueError) as exc:
            raise PrototypeError(f"{path}: corrupt prototype bank ({one_line(exc, 200)})") from None
        return bank

    def fingerprint(self) -> str:
        """The model fingerprint this bank's embeddings belong to (see :func:`model_fingerprint`)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    # ---- helpers ----------------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise PrototypeError(f"custom action name must be a non-empty string, got {name!r}")
        if name == UNKNOWN:
            raise PrototypeError(f"custom action name {UNKNOWN!r} is reserved")
        if name in self.model.class_names:
            raise PrototypeError(f"custom action {name!r} clashes with a base class of the model; choose another name")

    def _window(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One preprocessed window as a ``[1, ...]`` float32 batch on the model's device."""
        shape = self.model.config.specs[modality].output_shape()
        if x.dim() == len(shape):
            x = x.unsqueeze(0)
        if x.dim() != len(shape) + 1 or x.shape[0] != 1:
            raise PrototypeError(f"{modality}: expected one window of shape {shape}, got {tuple(x.shape)}")
        return x.to(device=self.model.device, dtype=torch.float32)

    def _encode(self, inputs: Mapping[str, torch.Tensor]) -> Encoded:
        batch = {m: self._window(m, x) for m, x in inputs.items()}
        with torch.inference_mode():
            return self.model.encode_batch(batch)


def combine(base_probs: Sequence[float] | np.ndarray | None, base_names: Sequence[str],
            custom: CustomScores | None) -> tuple[list[str], list[str], np.ndarray]:
    """Labels, kinds (``base``/``custom``) and probabilities of the one combined list (unsorted)."""
    labels: list[str] = []
    kinds: list[str] = []
    parts: list[np.ndarray] = []
    gate = custom.gate if custom is not None and len(custom.names) else 0.0
    if base_probs is not None:
        labels += list(base_names)
        kinds += ["base"] * len(base_names)
        parts.append((1.0 - gate) * np.asarray(base_probs, dtype=np.float64))
    if custom is not None and len(custom.names):
        labels += list(custom.names)
        kinds += ["custom"] * len(custom.names)
        parts.append(gate * np.asarray(custom.probs, dtype=np.float64))
    probs = np.concatenate(parts) if parts else np.zeros(0)
    return labels, kinds, probs


def ranked(labels: Sequence[str], kinds: Sequence[str], probs: np.ndarray, top_k: int,
           unknown_threshold: float) -> tuple[str, list[dict]]:
    """``(label, top)``: top-k ``{"label","p","kind"}`` entries and the top label, or ``unknown``."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:max(1, top_k)]
    top = [{"label": labels[i], "p": float(probs[i]), "kind": kinds[i]} for i in order]
    if not top or top[0]["p"] < unknown_threshold:
        return UNKNOWN, top
    return top[0]["label"], top
