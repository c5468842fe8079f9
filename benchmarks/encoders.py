"""Per-encoder CPU latency at batch 1 (p50/p95) for the ``lite`` and ``paper`` configs.

The baseline in the same run is the ``paper`` config (the MMG-Ego4D encoders); ``lite`` is
what the live app runs on CPU. Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import torch

warnings.filterwarnings("ignore", category=FutureWarning)


def main() -> None:
    from mmg_live.models.mmg import build_model
    from mmg_live.models.profile import format_table, profile_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("MMG_BENCH_REPEATS", 20)))
    parser.add_argument("--paper-repeats", type=int, default=int(os.environ.get("MMG_BENCH_PAPER_REPEATS", 5)))
    args = parser.parse_args()
    results = {"threads": torch.get_num_threads()}
    for name, repeats in (("lite", args.repeats), ("paper", args.paper_repeats)):
        torch.manual_seed(0)
        report = profile_model(build_model(name, ["a", "b"]), repeats=repeats)
        print(format_table(name, report))
        print()
        results[name] = report
    lite_ms = sum(e["cpu_ms_p50"] for e in results["lite"].values())
    paper_ms = sum(e["cpu_ms_p50"] for e in results["paper"].values())
    results["speedup_p50_lite_vs_paper"] = round(paper_ms / lite_ms, 1)
    print(f"all encoders + fusion, p50: lite {lite_ms:.1f} ms vs paper {paper_ms:.1f} ms "
          f"({results['speedup_p50_lite_vs_paper']}x)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
