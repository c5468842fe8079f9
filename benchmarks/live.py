"""Live inference end to end: sources → buffers → InferenceEngine → predictions.

The ``lite`` config with all three modalities (marked trained; weights do not change the
cost) is fed by synthetic looping replay sources (gray 30 fps 120x160 video, 16 kHz audio in
512-sample blocks, 50 Hz IMU) or by a recorded session (``--replay DIR``). Two phases in the
same run, on the same sources:

* ``baseline``: the engine with no smoothing and no prototype bank;
* ``full``: EMA smoothing and a prototype bank of two custom actions (5 examples each).

Reported per phase: window→prediction latency (``age``: newest sample's time → prediction
emitted, which includes waiting for the next stride tick) and processing latency
(``total``, fetch → emitted) p50/p95 in ms, predictions per second, skipped windows, errors,
RSS at the phase's start and end; plus the enrolment time of one 5-example action. Prints a
table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", category=FutureWarning)

from devices.base import host_now  # noqa: E402
from devices.replay import ReplayClock, ReplaySource, open_replay  # noqa: E402


def rss_mb() -> float:
    """Resident set size now, in MiB (from /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_sources(span: float = 20.0) -> list[ReplaySource]:
    """Three looping sources on one clock (deterministic content)."""
    rng = np.random.default_rng(0)
    clock = ReplayClock(0.0, span, 1.0, loop_gap=1.0 / 30)
    nv, na, ni = int(30 * span), int(16000 * span), int(50 * span)
    tv = np.arange(nv) / 30
    frames = np.zeros((nv, 120, 160, 1), np.uint8)
    for i in range(nv):
        x = int(20 + 100 * (0.5 + 0.5 * np.sin(i / 20)))
        frames[i, 30:90, x:x + 30] = 180
    ta = np.arange(na) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 300 * ta) + rng.normal(0, 0.01, na)).astype(np.float32)[:, None]
    ti = np.arange(ni) / 50
    imu = np.stack([np.sin(ti), np.cos(ti), np.ones_like(ti), 20 * np.sin(3 * ti), 0 * ti, 5 * np.cos(ti)],
                   1).astype(np.float32)
    blocks = [512] * (na // 512) + ([na % 512] if na % 512 else [])
    return [
        ReplaySource("video", "video", tv, frames, clock=clock, loop=True),
        ReplaySource("audio", "audio", ta, audio, blocks=blocks, clock=clock, loop=True, nominal_rate=16000.0),
        ReplaySource("imu", "imu", ti, imu, clock=clock, loop=True),
    ]


def run_phase(name: str, model, buffers, streams, seconds: float, stride: float, device: str,
              smoothing: str, bank) -> dict:
    from mmg_live.live.engine import InferenceEngine

    preds = []
    lock = threading.Lock()

    def collect(p) -> None:
        with lock:
            preds.append(p)

    rss0 = rss_mb()
    engine = InferenceEngine(model, buffers.synchronizer, streams, stride_s=stride, smoothing=smoothing,
                             device=device, prototypes=bank, on_prediction=collect)
    t0 = host_now()
    with engine:
        time.sleep(seconds)
    elapsed = host_now() - t0
    stats = engine.stats()
    with lock:
        got = list(preds)
    total = np.array([p.latency_ms["total"] for p in got]) if got else np.zeros(1)
    age = np.array([(p.emitted - p.t) * 1e3 for p in got]) if got else np.zeros(1)
    stages = {s: round(float(np.median([p.latency_ms[s] for p in got])), 2) if got else None
              for s in ("fetch", "preprocess", "encode_fuse", "post")}
    used = sorted({"+".join(p.modalities) for p in got})
    return {
        "phase": name, "seconds": round(elapsed, 2), "predictions": len(got),
        "predictions_per_s": round(len(got) / elapsed, 3), "windows": stats["windows"], "skipped": stats["skipped"],
        "errors": stats["errors"], "last_error": stats["last_error"], "modalities": used,
        "total_ms_p50": round(float(np.percentile(total, 50)), 2), "total_ms_p95": round(float(np.percentile(total, 95)), 2),
        "age_ms_p50": round(float(np.percentile(age, 50)), 2), "age_ms_p95": round(float(np.percentile(age, 95)), 2),
        "stage_ms_p50": stages, "rss_mb_start": round(rss0, 1), "rss_mb_end": round(rss_mb(), 1),
        "smoothing": smoothing, "custom_actions": 0 if bank is None else len(bank),
    }


def enrol(model, buffers, streams, bank, name: str, examples: int, gap: float) -> float:
    """Enrol ``examples`` windows (taken ``gap`` s apart from the live buffers) as one action."""
    from mmg_live.live.windowing import synchronizer_windows, window_tensors

    windows = []
    for _ in range(examples):
        t_end = buffers.synchronizer.latest_time()
        raw = synchronizer_windows(buffers.synchronizer, model.config.specs, t_end, streams)
        rates = {m: buffers.synchronizer.buffers[streams[m]].rate for m in streams}
        tensors, problems = window_tensors(raw, model.config.specs, t_end, rates)
        if problems:
            raise RuntimeError(f"enrolment window not usable: {problems}")
        windows.append(tensors)
        time.sleep(gap)
    t0 = time.perf_counter()
    for tensors in windows:
        bank.add_example(name, tensors, meta={"source": "benchmark"})
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the full phase (default 60; 600 = 10 min)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0, help="length of the baseline phase")
    parser.add_argument("--stride", type=float, default=0.25, help="engine stride in seconds")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    parser.add_argument("--replay", metavar="DIR", help="feed a recorded session (looping) instead of synthetic sources")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from mmg_live.live.engine import SourceBuffers
    from mmg_live.models.mmg import build_model
    from mmg_live.prototypes import PrototypeBank

    rss_start = rss_mb()
    sources = open_replay(args.replay, speed=1.0, loop=True) if args.replay else synthetic_sources()
    torch.manual_seed(0)
    model = build_model("lite", [f"class{i}" for i in range(27)])
    mods = sorted({s.modality for s in sources})
    model.trained.encoders, model.trained.fusion, model.trained.classifier = list(mods), list(mods), True
    buffers = SourceBuffers.for_model(model)  # what mmg-live --headless allocates
    streams = buffers.attach(sources)
    for s in sources:
        s.start()
    try:
        warm = host_now() + 60
        while host_now() < warm:  # until every window is covered
            t = buffers.synchronizer.latest_time()
            if t is not None and all(
                    (b.oldest_time() or t) <= t - model.config.specs[b.modality].window_s
                    for b in buffers.synchronizer.buffers.values()) and len(buffers.synchronizer.buffers) == len(streams):
                break
            time.sleep(0.1)
        baseline = run_phase("baseline", model, buffers, streams, args.baseline_seconds, args.stride,
                             args.device, "none", None)
        bank = PrototypeBank(model)
        enrol_s = enrol(model, buffers, streams, bank, "custom_a", 5, 0.2)
        enrol(model, buffers, streams, bank, "custom_b", 5, 0.2)
        full = run_phase("full", model, buffers, streams, args.seconds, args.stride, args.device, "ema", bank)
    finally:
        for s in sources:
            s.stop()

    rows = [("", "baseline", "full"),
            ("smoothing / custom actions", "none / 0", f"ema / {full['custom_actions']}"),
            ("seconds", baseline["seconds"], full["seconds"]),
            ("modalities", ",".join(baseline["modalities"]), ",".join(full["modalities"])),
            ("predictions / s", baseline["predictions_per_s"], full["predictions_per_s"]),
            ("windows / skipped", f"{baseline['windows']} / {baseline['skipped']}", f"{full['windows']} / {full['skipped']}"),
            ("errors", baseline["errors"], full["errors"]),
            ("window->prediction p50/p95 ms", f"{baseline['age_ms_p50']} / {baseline['age_ms_p95']}",
             f"{full['age_ms_p50']} / {full['age_ms_p95']}"),
            ("processing p50/p95 ms", f"{baseline['total_ms_p50']} / {baseline['total_ms_p95']}",
             f"{full['total_ms_p50']} / {full['total_ms_p95']}"),
            ("  encode+fuse p50 ms", baseline["stage_ms_p50"]["encode_fuse"], full["stage_ms_p50"]["encode_fuse"]),
            ("  preprocess p50 ms", baseline["stage_ms_p50"]["preprocess"], full["stage_ms_p50"]["preprocess"]),
            ("RSS start / end MiB", f"{baseline['rss_mb_start']} / {baseline['rss_mb_end']}",
             f"{full['rss_mb_start']} / {full['rss_mb_end']}")]
    print(f"live engine, lite config, device {args.device}, stride {args.stride} s, torch threads {torch.get_num_threads()}, "
          f"{'replay ' + args.replay if args.replay else 'synthetic sources'}")
    for label, a, b in rows:
        print(f"  {label:<32} {str(a):>22} {str(b):>22}")
    print(f"  enrolment of a 5-example action (video+audio+imu, 7 subsets each): {enrol_s * 1e3:.0f} ms")
    print(json.dumps({"config": "lite", "device": args.device, "stride_s": args.stride,
                      "threads": torch.get_num_threads(), "source": args.replay or "synthetic",
                      "rss_mb_process_start": round(rss_start, 1), "enrol_5_examples_ms": round(enrol_s * 1e3, 1),
                      "baseline": baseline, "full": full}))


if __name__ == "__main__":
    main()
