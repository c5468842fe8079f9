"""One training step of the ``lite`` model on video + IMU, in the default memory layout (the
baseline) and in the trainer's layout (``trainer.run.use_training_layout``: 3-D convolutions
channels-last), interleaved in one run; plus the video encoder at batch 1 (a live window) in
both layouts, which is why only the trainer switches.

A step is what a supervised stage does per batch: encode, fuse, classify, cross-entropy on the
fused and unimodal heads, backward, AdamW. Random inputs of the config's shapes; seconds p50/p95
and clips/s. Prints a table, then one JSON object as the last line.

    python benchmarks/training_step.py [--threads 1] [--batch 16] [--repeats 8]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F


def _stats(seconds: list[float], clips: int) -> dict[str, float]:
    p50, p95 = np.percentile(seconds, [50, 95])
    return {"s_p50": round(float(p50), 4), "s_p95": round(float(p95), 4),
            "clips_per_s": round(clips * len(seconds) / sum(seconds), 1)}


def main() -> None:
    from mmg_live.models.mmg import build_model
    from trainer.run import use_training_layout

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (make results trains on 1)")
    parser.add_argument("--batch", type=int, default=16, help="clips per step (the video recipes' batch)")
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    layouts = {"default": lambda m: m, "training (3-D conv channels-last)": use_training_layout}
    models, optims = {}, {}
    for name, arrange in layouts.items():
        torch.manual_seed(0)
        models[name] = arrange(build_model("lite", [str(i) for i in range(27)]))
        optims[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
    specs = models["default"].config.specs
    gen = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(args.batch, *specs[m].output_shape(), generator=gen) for m in ("video", "imu")}
    labels = torch.randint(0, 27, (args.batch,), generator=gen)

    def step(name: str) -> None:
        model, optim = models[name], optims[name]
        out = model(inputs)
        loss = F.cross_entropy(out.logits, labels) + sum(F.cross_entropy(v, labels) for v in out.unimodal_logits.values())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    def window(name: str) -> None:
        with torch.inference_mode():
            models[name].encoders["video"](one)

    one = inputs["video"][:1]
    train_s = {name: [] for name in layouts}
    live_s = {name: [] for name in layouts}
    for name in layouts:  # warm-up
        models[name].train(), step(name)
    for _ in range(args.repeats):  # interleaved, so both layouts see the same machine state
        for name in layouts:
            models[name].train()
            start = time.perf_counter()
            step(name)
            train_s[name].append(time.perf_counter() - start)
            models[name].eval()
            start = time.perf_counter()
            for _ in range(5):
                window(name)
            live_s[name].append((time.perf_counter() - start) / 5)

    results = {"threads": args.threads, "batch": args.batch}
    print(f"{'layout':<36s} {'step p50 s':>10s} {'p95 s':>8s} {'clips/s':>8s} {'video b1 p50 ms':>16s} {'p95 ms':>8s}")
    for name in layouts:
        train, live = _stats(train_s[name], args.batch), _stats(live_s[name], 1)
        results[name] = {"train_step": train, "video_window_ms_p50": round(live["s_p50"] * 1e3, 2),
                         "video_window_ms_p95": round(live["s_p95"] * 1e3, 2)}
        print(f"{name:<36s} {train['s_p50']:10.3f} {train['s_p95']:8.3f} {train['clips_per_s']:8.1f} "
              f"{live['s_p50'] * 1e3:16.1f} {live['s_p95'] * 1e3:8.1f}")
    base, fast = (results[n]["train_step"]["s_p50"] for n in layouts)
    results["train_step_speedup_p50"] = round(base / fast, 2)
    print(f"training step p50: {base:.3f} s default vs {fast:.3f} s training layout ({results['train_step_speedup_p50']}x)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
