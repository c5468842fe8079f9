"""Where the project finds the real recordings (``$MMG_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path | None:
    """The real-recordings folder: ``$MMG_DATA``, else ``../shared/data`` beside the checkout.

    Returns None when neither exists.
    """
    env = os.environ.get("MMG_DATA")
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    default = REPO_ROOT.parent / "shared" / "data"
    return default if default.is_dir() else None
