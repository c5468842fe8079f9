"""On-disk cache of decoded clips and preprocessed tensors (``.npz``, written atomically).

Entries are keyed by a dict (source file path + size + content hash + reader version, plus a
preprocessing-config hash for preprocessed tensors) hashed to a file name, so a changed
source file or reader gives a new key and later epochs and runs do not decode again.
Source files are identified by content, not modification time, so a dataset that is copied
or restored in place (new mtimes, same bytes) keeps its entries.

The folder is bounded: when a write takes it over its limit (``$MMG_CACHE_MAX_GB``, default
20 GB), the least recently used entries are removed until it is back under 80 % of the limit.
The default folder is ``$MMG_CACHE`` or ``~/.cache/mmg-live``; never the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from mmg_common.files import atomic_write
from trainer.data.clip import Clip, arrays_to_clip, clip_to_arrays

DEFAULT_MAX_GB = 20.0
# After an eviction the folder holds at most this share of the limit, so that the next
# few writes do not each trigger a scan of the whole folder.
PRUNE_TARGET = 0.8
# Files up to this size are identified by a hash of their bytes; larger ones (long
# videos) by size and mtime, so that a lookup never reads gigabytes.
CONTENT_HASH_MAX_BYTES = 64 * 2**20
_FROM_ENVIRONMENT: Any = object()  # Cache(max_bytes=...) default: read $MMG_CACHE_MAX_GB


def default_cache_dir() -> Path:
    """``$MMG_CACHE`` when set, else ``~/.cache/mmg-live``."""
    env = os.environ.get("MMG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmg-live"


def default_max_bytes() -> int | None:
    """The size limit from ``$MMG_CACHE_MAX_GB`` (default 20 GB); ``0`` means no limit."""
    text = os.environ.get("MMG_CACHE_MAX_GB", "").strip()
    if not text:
        return int(DEFAULT_MAX_GB * 1e9)
    try:
        gigabytes = float(text)
    except ValueError:
        raise ValueError(f"MMG_CACHE_MAX_GB={text!r}: expected a number of gigabytes (0 = no limit)") from None
    if gigabytes < 0:
        raise ValueError(f"MMG_CACHE_MAX_GB={text!r}: must be >= 0 (0 = no limit)")
    return None if gigabytes == 0 else int(gigabytes * 1e9)


def file_key(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of a source file for a cache key: resolved path, size and a content hash.

    Files over ``CONTENT_HASH_MAX_BYTES`` are identified by their mtime instead of a hash.
    """
    p = Path(path).resolve()
    st = p.stat()
    key: dict[str, Any] = {"path": str(p), "size": st.st_size}
    if st.st_size <= CONTENT_HASH_MAX_BYTES:
        with open(p, "rb") as f:
            key["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    else:
        key["mtime_ns"] = st.st_mtime_ns
    return key


def config_hash(config: Any) -> str:
    """A stable short hash of a JSON-serialisable preprocessing config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class CacheUsage:
    """What a cache folder holds: entry count and total bytes."""

    entries: int
    bytes: int


class Cache:
    """A bounded folder of ``.npz`` entries.

    Args:
        root: cache folder; created on first write. Default :func:`default_cache_dir`.
        enabled: False turns every lookup into a plain ``compute()`` call.
        max_bytes: size limit; least recently used entries go first when a write passes it.
            Default :func:`default_max_bytes`; ``None`` means no limit.
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True,
                 max_bytes: int | None = _FROM_ENVIRONMENT) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.max_bytes = default_max_bytes() if max_bytes is _FROM_ENVIRONMENT else max_bytes
        self.hits = 0
        self.misses = 0
        self.evicted = 0
        self._size: int | None = None  # bytes in the folder; scanned on the first write

    def path_for(self, key: dict[str, Any]) -> Path:
        """The entry file for ``key``."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npz"

    def cached(self, key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The arrays stored under ``key``, or ``compute()``'s result, stored for next time.

        A corrupt entry (e.g. a crash mid-write on a filesystem without atomic rename), or one
        removed by another process meanwhile, is recomputed and written again.
        """
        if not self.enabled:
            return compute()
        path = self.path_for(key)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                self.hits += 1
                _mark_used(path)
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

    def usage(self) -> CacheUsage:
        """Entries and bytes in the folder now (a scan)."""
        entries = _entries(self.root)
        return CacheUsage(len(entries), sum(size for _, size, _ in entries))

    def prune(self, max_bytes: int) -> CacheUsage:
        """Remove least recently used entries until the folder holds at most ``max_bytes``.

        Returns what was removed. Entries another process removes meanwhile are skipped.
        """
        entries = sorted(_entries(self.root), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        removed = removed_bytes = 0
        for path, size, _ in entries:
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
            removed_bytes += size
        self._size = total
        self.evicted += removed
        return CacheUsage(removed, removed_bytes)

    def clear(self) -> CacheUsage:
        """Remove every entry (and stale temporary files); returns what was removed."""
        return self.prune(0)

    def _write(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        sizes: list[int] = []

        def save(f: IO[bytes]) -> None:
            np.savez(f, **arrays)
            sizes.append(f.tell())

        atomic_write(path, save)
        written = sizes[0]
        if self.max_bytes is None:
            return
        if self._size is None:
            self._size = self.usage().bytes
        else:
            self._size += written  # not path.stat(): another process may have evicted it already
        if self._size > self.max_bytes:
            self.prune(int(self.max_bytes * PRUNE_TARGET))


def _mark_used(path: Path) -> None:
    """Stamp an entry as just used (mtime), for least-recently-used eviction; best effort."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves hits


def _entries(root: Path) -> list[tuple[Path, int, int]]:
    """``(path, bytes, mtime_ns)`` of every entry under ``root``.

    Only the two-hex-digit shard folders are looked into (other things that share the folder,
    such as the demo session, are never touched); a temporary file (see :func:`_is_temporary`)
    counts only once it is an hour old, i.e. left behind by a crash rather than being written now.
    """
    out: list[tuple[Path, int, int]] = []
    if not root.is_dir():
        return out
    stale_before = time.time_ns() - 3600 * 10**9
    for shard in os.scandir(root):
        if len(shard.name) != 2 or not all(c in "0123456789abcdef" for c in shard.name):
            continue
        if not shard.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(shard.path):
            temporary = _is_temporary(entry.name)
            if not (entry.name.endswith(".npz") or temporary):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if temporary and st.st_mtime_ns > stale_before:
                continue
            out.append((Path(entry.path), st.st_size, st.st_mtime_ns))
    return out


def _is_temporary(name: str) -> bool:
    """Whether a shard file is an entry being written: ``atomic_write``'s ``.<entry>.<random>.tmp``,
    or ``.tmp-<random>.npz`` as caches written before it named them."""
    return name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp"))


def cached(
    key: dict[str, Any], compute: Callable[[], dict[str, np.ndarray]], root: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """Module-level shortcut for ``Cache(root).cached(key, compute)`` (default folder: ``$MMG_CACHE``)."""
    return Cache(root).cached(key, compute)
