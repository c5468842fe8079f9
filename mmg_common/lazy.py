"""Lazy package exports: a package names what it offers, and a name's module is imported on first
use, so importing one light submodule does not load the heavy ones (OpenCV, libsndfile, torch)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package`` whose public names live in submodules.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule (relative to ``package``) that defines it.

    Use in a package's ``__init__``: ``__getattr__, __all__ = lazy_exports(__name__, {...})``.
    """

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return module_getattr, sorted(exports)
