"""On-disk cache of decoded clips and preprocessed tensors (``.npz``, written atomically).

Entries are keyed by a dict (source file path + size + mtime + reader version, plus a
preprocessing-config hash for preprocessed tensors) hashed to a file name, so a changed
source file or reader gives a new key and later epochs and runs do not decode again.
The default folder is ``$MMG_CACHE`` or ``~/.cache/mmg-live``; never the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainer.data.clip import Clip, arrays_to_clip, clip_to_arrays


def default_cache_dir() -> Path:
    """``$MMG_CACHE`` when set, else ``~/.cache/mmg-live``."""
    env = os.environ.get("MMG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmg-live"


def file_key(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of a source file for a cache key: resolved path, size and mtime (ns)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def config_hash(config: Any) -> str:
    """A stable short hash of a JSON-serialisable preprocessing config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Cache:
    """A folder of ``.npz`` entries.

    Args:
        root: cache folder; created on first write. Default :func:`default_cache_dir`.
        enabled: False turns every lookup into a plain ``compute()`` call.
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def path_for(self, key: dict[str, Any]) -> Path:
        """The entry file for ``key``."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npz"

    def cached(self, key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The arrays stored under ``key``, or ``compute()``'s result, stored for next time.

        A corrupt entry (e.g. a crash mid-write on a filesystem without atomic rename) is
        recomputed and overwritten.
        """
        if not self.enabled:
            return compute()
        path = self.path_for(key)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                self.hits += 1
                return arrays
            except (OSError, ValueError, zipfile.BadZipFile, EOFError):
                pass
        self.misses += 1
        arrays = compute()
        self._write(path, arrays)
        return arrays

    def cached_clip(self, key: dict[str, Any], load: Callable[[], Clip]) -> Clip:
        """Like :meth:`cached` for a whole :class:`Clip`."""
        return arrays_to_clip(self.cached(key, lambda: clip_to_arrays(load())))

    def _write(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cached(
    key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]], root: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Module-level shortcut for ``Cache(root).cached(key, compute)`` (default folder: ``$MMG_CACHE``)."""
    return Cache(root).cached(key, compute)
