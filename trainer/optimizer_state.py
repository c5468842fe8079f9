"""An optimizer's state on disk as safetensors (tensors) + JSON metadata (scalars): never pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mmg_common import atomic_write_bytes


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Write ``optimizer``'s state to ``path`` atomically (a crash leaves the previous file)."""
    from safetensors.torch import save

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars[f"{pid}.{k}"] = v
    meta = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    atomic_write_bytes(path, save(tensors or {"_empty": torch.zeros(1)}, metadata=meta))


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore the state :func:`save_optimizer` wrote into ``optimizer`` (same parameter groups)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys() if k != "_empty"}
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(json.loads(meta["scalars"]).items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
