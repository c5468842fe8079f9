"""A recipe's ``init``: weights copied from earlier runs' checkpoints before training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from mmg_live.checkpoint import load_checkpoint
from mmg_live.models.mmg import MMGModel
from trainer.recipe import InitEntry

log = logging.getLogger("mmg-train")


def _requested_prefixes(name: str, parts: list[str] | None) -> list[str]:
    """The key prefixes of encoder ``name`` that an ``init`` entry asks for (none: not asked)."""
    whole = f"encoders.{name}."
    if not parts or any(p in ("encoders", whole[:-1]) for p in parts):
        return [whole]
    return [p.rstrip(".") + "." for p in parts if p.startswith(whole)]


def _encoder_mismatch(src_state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                      parts: list[str] | None) -> str | None:
    """Why a requested encoder of the donor cannot be copied whole into this model, or None.

    An encoder built by another config (other shapes, or extra or missing layers) is refused even
    when some of its tensors would fit: copying only those would leave it half initialised.
    """
    for name in sorted({k.split(".")[1] for k in src_state if k.startswith("encoders.")}):
        prefixes = _requested_prefixes(name, parts)
        if not prefixes:
            continue
        theirs = {k: tuple(v.shape) for k, v in src_state.items() if k.startswith(tuple(prefixes))}
        ours = {k: tuple(v.shape) for k, v in own.items() if k.startswith(tuple(prefixes))}
        if not ours:
            if parts:
                return f"this recipe's config has no {name} encoder (asked for {prefixes[0][:-1]})"
            continue
        extra, missing = sorted(theirs.keys() - ours.keys()), sorted(ours.keys() - theirs.keys())
        other = sorted(k for k in theirs.keys() & ours.keys() if theirs[k] != ours[k])
        if extra or missing:
            detail = f"{len(extra)} tensors more, {len(missing)} fewer; " + \
                (f"it has {extra[0]}" if extra else f"it lacks {missing[0]}")
        elif other:
            detail = f"{len(other)} tensors differ in shape, e.g. {other[0]}"
        else:
            continue
        return f"its {name} encoder has another architecture than this recipe's config ({detail})"
    return None


def init_from_checkpoints(model: MMGModel, entries: Sequence[InitEntry]) -> None:
    """Copy weights (whole model or named parts) from earlier runs' checkpoints (a recipe's ``init``).

    Encoders are copied whole or not at all (an error names the checkpoint); a head of another
    shape (another class set) is skipped on purpose. The model's trained-part flags gain the
    encoders copied.
    """
    for entry in entries:
        path = Path(entry.checkpoint)
        source, info = load_checkpoint(path, device="cpu")
        parts = entry.parts
        src_state = source.state_dict()
        own = model.state_dict()
        mismatch = _encoder_mismatch(src_state, own, parts)
        if mismatch:
            raise ValueError(f"{path}: {mismatch}; train that checkpoint again with the current config")
        copied, other_shape = 0, []
        for key, value in src_state.items():
            if parts and not any(key.startswith(p) for p in parts):
                continue
            if key in own and own[key].shape == value.shape:
                own[key].copy_(value)
                copied += 1
            elif key in own:
                other_shape.append(key)
        if other_shape:
            log.info("not copied from %s (other shape): %s", path, ", ".join(other_shape))
        if copied == 0:
            raise ValueError(f"{path}: no weights matched parts {parts}")
        for m in info.trained.encoders:
            if _requested_prefixes(m, parts) and m not in model.trained.encoders:
                model.trained.encoders.append(m)
        log.info("initialised %d tensors from %s", copied, path)
