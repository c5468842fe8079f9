"""Process-wide memory settings for the long-running live app.

glibc gives every new thread its own malloc arena (up to 8 per core) and keeps what was freed in
it for reuse. The live app runs an inference worker, capture threads and OpenMP workers for hours:
each extra arena holds tens of MiB of freed tensors and buffers that RSS keeps counting (measured
with ``benchmarks/live.py``: +30 MiB in the first 10 s after the engine thread starts with glibc's
default, +0.5 MiB with two arenas, at the same latency). ``MALLOC_ARENA_MAX`` is glibc's documented
knob for this; :func:`limit_malloc_arenas` sets the same limit from inside the process.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``M_ARENA_MAX`` from glibc's ``<malloc.h>``.
M_ARENA_MAX = -8

#: Arenas the live app allows by default (main thread + one shared by the workers).
DEFAULT_MAX_ARENAS = 2


def limit_malloc_arenas(max_arenas: int = DEFAULT_MAX_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``max_arenas``; returns True when the limit was applied.

    Call it early, before the worker threads start (arenas already made stay). It does nothing
    (returns False) off Linux, on a C library without ``mallopt`` (or one that ignores it, such as
    musl), and when the user set ``MALLOC_ARENA_MAX`` in the environment: their setting wins.
    """
    if max_arenas < 1:
        raise ValueError(f"max_arenas must be >= 1, got {max_arenas}")
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, int(max_arenas)) == 1


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim(0)``); True if any were.

    A live process frees and re-allocates tens of MiB of tensors every window; glibc keeps what
    was freed (``mallinfo2().fordblks`` measured 100–130 MiB on the live benchmark), so RSS wanders
    by tens of MiB with no leak. Trimming every few seconds keeps RSS at what is in use.
    Does nothing (False) off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim(0) == 1
