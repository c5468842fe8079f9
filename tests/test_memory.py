"""limit_malloc_arenas: glibc's arena cap set from inside the process (the live app's RSS fix)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mmg_live.live.memory import limit_malloc_arenas

# Six threads that each allocate while the others still hold their memory: with glibc's default
# every thread gets its own arena; malloc_stats() prints one "Arena N:" block per arena to stderr.
PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from mmg_live.live.memory import limit_malloc_arenas, release_free_memory
    applied = limit_malloc_arenas(2) if sys.argv[1] == "limit" else False
    barrier = threading.Barrier(6)
    def work():
        keep = [bytearray(4096) for _ in range(200)]
        barrier.wait()
        keep.clear()
    threads = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(applied, flush=True)
    ctypes.CDLL(None).malloc_stats()
""")


def arenas(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=60,
                         check=True)
    return out.stdout.strip(), sum(line.startswith("Arena ") for line in out.stderr.splitlines())


def on_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not on_glibc(), reason="glibc only")
def test_limit_caps_arenas_of_new_threads():
    applied_default, default = arenas("default")
    applied_limited, limited = arenas("limit")
    assert applied_default == "False" and applied_limited == "True"
    assert default > 2, f"probe should make more than 2 arenas without the limit, got {default}"
    assert 1 <= limited <= 2


def test_user_setting_wins_and_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False
    with pytest.raises(ValueError, match="max_arenas"):
        limit_malloc_arenas(0)


# 80 MiB of small blocks freed while the newest stays allocated (so free() cannot shrink the
# heap's top): glibc keeps the pages until malloc_trim hands them back.
TRIM_PROBE = textwrap.dedent("""
    import ctypes, sys
    from mmg_live.live.memory import release_free_memory
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    def rss():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
    blocks = [libc.malloc(4000) for _ in range(20000)]
    for b in blocks:
        ctypes.memset(b, 1, 4000)
    keep = libc.malloc(4000)
    for b in blocks:
        libc.free(b)
    before = rss()
    released = release_free_memory()
    print(released, round(before - rss(), 1))
""")


@pytest.mark.skipif(not on_glibc(), reason="glibc only")
def test_release_free_memory_returns_freed_heap_pages():
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, timeout=60, check=True)
    released, dropped_mb = out.stdout.split()
    assert released == "True"
    assert float(dropped_mb) > 50, out.stdout
