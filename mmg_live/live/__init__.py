"""Live path: ring buffers and synchronised windows, session recording.

Names are imported lazily so that importing one submodule (e.g. the buffer) does not pull in
OpenCV and libsndfile.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StreamBuffer": "buffer",
    "Synchronizer": "buffer",
    "StreamWindow": "buffer",
    "SessionWriter": "recorder",
    "SessionReader": "recorder",
    "SessionError": "recorder",
    "StreamData": "recorder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
