"""Files shipped inside the package: the default checkpoint and its model card."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def default_checkpoint_path() -> Path:
    """The shipped default model (lite config, UTD-MHAD classes); see MODEL_CARD.md beside it."""
    path = ASSETS / "default.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the default checkpoint is not installed (build it with `make default-model`)")
    return path
