"""Clip loading through the on-disk cache: per-clip latency (p50/p95) and clips/s.

Loads UTD-MHAD trials (video + IMU) three ways in one run: decoding the ``.mat`` files with
no cache (the baseline), a cold cache (decode + write) and a warm cache (key with the source
files' content hash + read). Also prints the key alone (hashing) and the cache folder size.
The cache is a fresh temporary folder, so the user's cache is not touched.
Prints a table, then one JSON object as the last line.

    python benchmarks/data_cache.py [--data ../shared/data/utd-mhad] [--subjects 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _row(name: str, ms: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(ms, [50, 95])
    stats = {"ms_p50": round(float(p50), 3), "ms_p95": round(float(p95), 3),
             "clips_per_s": round(len(ms) / (sum(ms) / 1e3), 1)}
    print(f"{name:<28s} {stats['ms_p50']:9.2f} {stats['ms_p95']:9.2f} {stats['clips_per_s']:9.1f}")
    return stats


def main() -> int:
    from trainer.data.cache import Cache, file_key
    from trainer.data.utd_mhad import UtdMhadDataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared/data/utd-mhad"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--subjects", default="1")
    args = parser.parse_args()
    if not (args.data / "Depth").is_dir():
        print(f"data_cache: no UTD-MHAD at {args.data} (pass --data DIR); nothing measured", file=sys.stderr)
        return 0
    subjects = [int(s) for s in args.subjects.split(",")]
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain = UtdMhadDataset(args.data, subjects, cache=None)
        cached = UtdMhadDataset(args.data, subjects, cache=Cache(tmp, max_bytes=None))
        n = len(plain)
        print(f"{n} UTD-MHAD trials (subjects {args.subjects}), video + IMU")
        print(f"{'path':<28s} {'p50 ms':>9s} {'p95 ms':>9s} {'clips/s':>9s}")
        results["decode_no_cache"] = _row("decode, no cache (baseline)", _timed(lambda i: plain[i], n))
        results["cold_cache"] = _row("cold cache (decode + write)", _timed(lambda i: cached[i], n))
        results["warm_cache"] = _row("warm cache (key + read)", _timed(lambda i: cached[i], n))
        trials = plain.trials
        results["key_only"] = _row("key (content hash)", _timed(
            lambda i: [file_key(trials[i].depth_path), file_key(trials[i].inertial_path)], n))
        usage = Cache(tmp).usage()
        results["cache_mb"] = round(usage.bytes / 1e6, 1)
        results["clips"] = n
    speedup = results["decode_no_cache"]["ms_p50"] / results["warm_cache"]["ms_p50"]
    results["speedup_p50_warm_vs_decode"] = round(speedup, 1)
    print(f"cache folder {results['cache_mb']} MB for {n} clips; warm cache {speedup:.1f}x faster than decoding (p50)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
