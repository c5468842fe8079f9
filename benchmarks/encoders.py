"""Per-encoder CPU latency at batch 1 (p50/p95) for the ``lite`` and ``paper`` configs.

The baseline in the same run is the ``paper`` config (the MMG-Ego4D encoders); ``lite`` is
what the live app runs on CPU. Then the ``lite`` video CNN as the live engine runs it on a CPU
(BatchNorm folded, oneDNN layout: ``mmg_live.models.cpu_inference``) against the same weights in
eager PyTorch. Prints tables, then one JSON object as the last line.
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
    results["lite_video_cpu_inference"] = cpu_inference_video(args.repeats * 3)
    print(json.dumps(results))


def cpu_inference_video(repeats: int) -> dict[str, object]:
    """p50/p95 ms of the ``lite`` video encoder at batch 1: eager (baseline) and the engine's CPU form."""
    from mmg_live.models.cpu_inference import cpu_inference_model
    from mmg_live.models.mmg import build_model
    from mmg_live.models.profile import latency_ms, percentiles_ms

    torch.manual_seed(0)
    model = build_model("lite", ["a", "b"]).eval()
    fast = cpu_inference_model(model)
    spec = model.config.specs.video
    x = torch.rand(1, spec.channels, spec.frames, spec.size, spec.size)
    out = {"form": type(fast.encoders["video"]).__name__}
    with torch.inference_mode():
        for name, encoder in (("eager", model.encoders["video"]), ("engine", fast.encoders["video"])):
            out[name] = percentiles_ms(latency_ms(lambda encoder=encoder: encoder(x), repeats=repeats, warmup=3))
        out["max_abs_diff"] = float((fast.encoders["video"](x)[1] - model.encoders["video"](x)[1]).abs().max())
    out["speedup_p50"] = round(out["eager"]["p50_ms"] / out["engine"]["p50_ms"], 2)
    print(f"lite video encoder, batch 1: eager p50/p95 {out['eager']['p50_ms']}/{out['eager']['p95_ms']} ms, "
          f"as the engine runs it ({out['form']}) {out['engine']['p50_ms']}/{out['engine']['p95_ms']} ms "
          f"({out['speedup_p50']}x, outputs within {out['max_abs_diff']:.1e})")
    return out


if __name__ == "__main__":
    main()
