"""Checkpoints: one ``.safetensors`` file, weights plus a JSON header. Never pickle.

The safetensors metadata holds ``mmg_live`` = JSON with the format version, model config,
class names, modality specs (normalisation stats included), which modalities each part was
trained on, free-form training info, and a SHA-256 of the weights. Loading validates all of it
and raises :class:`CheckpointError` with a one-line message naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmg_common import atomic_write_bytes, one_line
from mmg_live.models.mmg import MMGModel, TrainedParts, select_device
from mmg_live.models.registry import MMGConfig

FORMAT = "mmg-live-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "mmg_live"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


@dataclass
class CheckpointInfo:
    """The JSON side of a checkpoint."""

    config: MMGConfig
    class_names: list[str]
    trained: TrainedParts
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_safetensors_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, str]) -> Path:
    """Write a safetensors file via a temporary file + rename, so a crash never leaves half a file."""
    from safetensors.torch import save

    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def _state_for_saving(model: MMGModel) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; clone makes every tensor own its memory.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def weights_digest(model: MMGModel) -> str:
    """SHA-256 of every weight of ``model``: what a checkpoint file stores as ``weights_sha256``."""
    return _weights_digest(_state_for_saving(model))


def save_checkpoint(path: str | os.PathLike, model: MMGModel, training: dict[str, Any] | None = None) -> Path:
    """Write ``model`` atomically to ``path`` (a ``.safetensors`` file); returns the path."""
    path = Path(path)
    state = _state_for_saving(model)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "class_names": list(model.class_names),
        "trained": model.trained.to_dict(),
        "training": training or {},
        "weights_sha256": _weights_digest(state),
    }
    return write_safetensors_atomic(path, state, {_META_KEY: json.dumps(meta)})


def read_safetensors_json(path: Path, key: str, what: str, error: type[Exception],
                          with_tensors: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON object stored under ``key`` in a safetensors file's metadata (and, optionally, its
    tensors); every failure raises ``error`` with one line naming the file.

    ``what`` names the kind of file in messages (e.g. ``"checkpoint"``, ``"prototype bank"``).
    """
    from safetensors import safe_open

    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()} if with_tensors else {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise error(f"{path}: not a readable {what} file ({one_line(exc, limit=200)})") from None
    if key not in metadata:
        raise error(f"{path}: safetensors file without {what} metadata (not an mmg-live {what})")
    try:
        raw = json.loads(metadata[key])
    except json.JSONDecodeError as exc:
        raise error(f"{path}: corrupt {what} metadata ({exc.msg} at char {exc.pos})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: {what} metadata is not a JSON object")
    return raw, tensors


def read_info(path: str | os.PathLike) -> tuple[CheckpointInfo, dict[str, Any]]:
    """Read and validate only the JSON header (cheap); returns the info and the raw dict."""
    path = Path(path)
    raw, _ = read_safetensors_json(path, _META_KEY, "checkpoint", CheckpointError)
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {raw.get('format')!r} is not {FORMAT!r}")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} (this mmg-live reads {FORMAT_VERSION})")
    try:
        info = CheckpointInfo(
            config=MMGConfig.from_dict(raw["config"]),
            class_names=[str(c) for c in raw["class_names"]],
            trained=TrainedParts.from_dict(raw.get("trained", {})),
            training=dict(raw.get("training", {})),
            format_version=version,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({one_line(exc, limit=200)})") from None
    return info, raw


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "auto") -> tuple[MMGModel, CheckpointInfo]:
    """Rebuild the model from ``path`` on ``device`` (``auto`` → CUDA when present), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    info, raw = read_info(path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path}: truncated or corrupt weights ({one_line(exc, limit=200)})") from None
    expected = raw.get("weights_sha256")
    if expected and _weights_digest(state) != expected:
        raise CheckpointError(f"{path}: weights checksum mismatch (file corrupted after it was written)")
    model = MMGModel(info.config, info.class_names)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match config {info.config.name!r}: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{path}: {len(wrong)} tensors have the wrong shape, e.g. {k}: "
            f"{tuple(state[k].shape)} in file vs {tuple(own[k].shape)} expected"
        )
    model.load_state_dict(state)
    model.trained = info.trained
    target = select_device(device) if isinstance(device, str) else device
    return model.to(target).eval(), info
