"""How many threads the live app's torch inference may use.

Inference shares the CPU with capture, video decoding and pose estimation (MediaPipe's own graph
threads). A parallel torch op waits for its slowest thread, so when every core is also wanted by
those, intra-op threads mostly wait: on 2 cores, the command-line replay of the held-out UTD
session with pose (``tests/test_end_to_end.py``) measured latency p50/p95 46/62 ms with 2 torch
threads and 43/55 ms with 1. The live app therefore leaves one core to the rest.
"""

from __future__ import annotations


def default_inference_threads() -> int:
    """One fewer than the threads torch would use (its default or ``OMP_NUM_THREADS``), at least 1."""
    import torch

    return max(1, torch.get_num_threads() - 1)


def set_inference_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads for this process (``None``: :func:`default_inference_threads`)
    and return the number set. Process-wide: call it once, before inference starts."""
    import torch

    if threads is not None and threads < 1:
        raise ValueError(f"inference threads must be >= 1, got {threads}")
    n = default_inference_threads() if threads is None else int(threads)
    torch.set_num_threads(n)
    return n
