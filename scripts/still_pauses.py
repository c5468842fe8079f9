"""Replay held-out UTD-MHAD trials with long still pauses between them through the live engine
(pose derived from the replayed depth video, as mmg-live does) and report what a model says during
the pauses and at the end of each trial.

A prediction is "in a pause" when its whole longest window lies inside a pause (the person and
the sensor still); the share of those answered "no action" is the measure of issue 28's point 7.
The end-of-trial accuracy of the same run is the other half: saying "no action" must not cost
the actions.

Usage: python scripts/still_pauses.py CHECKPOINT [--utd DIR] [--trials N] [--pause S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.base import host_now  # noqa: E402
from devices.replay import open_replay  # noqa: E402
from mmg_live.checkpoint import load_checkpoint  # noqa: E402
from mmg_live.demo import write_trial_session  # noqa: E402
from mmg_live.live.engine import InferenceEngine  # noqa: E402
from mmg_live.live.source_buffers import SourceBuffers  # noqa: E402
from mmg_live.pose.stream import PoseStream  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--utd", default="../shared/data/utd-mhad")
    parser.add_argument("--trials", type=int, default=24, help="trials of subjects 2, 4, 6 (default 24)")
    parser.add_argument("--pause", type=float, default=6.0, help="still pause between trials, s (default 6)")
    parser.add_argument("--stride", type=float, default=0.25)
    args = parser.parse_args(argv)

    model, _ = load_checkpoint(args.checkpoint, "cpu")
    classes = set(model.class_names)
    from trainer.data.utd_mhad import ACTIONS

    actions = [a for a in range(1, 28) if ACTIONS[a - 1] in classes]
    rng = np.random.default_rng(0)
    trials = [(int(rng.choice(actions)), (2, 4, 6)[k % 3], 1 + (k // 3) % 4) for k in range(args.trials)]
    window_s = max(model.config.specs[m].window_s for m in model.trained.encoders)
    with tempfile.TemporaryDirectory() as tmp:
        placed = write_trial_session(Path(tmp) / "s", Path(args.utd), trials, None, gap_s=args.pause)
        sources = open_replay(Path(tmp) / "s", speed=1.0)
        if "pose" in model.trained.encoders:
            sources.append(PoseStream(next(s for s in sources if s.modality == "video")))
        buffers = SourceBuffers.for_model(model)
        streams = buffers.attach(sources)
        preds = []
        engine = InferenceEngine(model, buffers.synchronizer, streams, stride_s=args.stride, device="cpu",
                                 on_prediction=preds.append, sources=buffers.sources)
        clock = sources[0].clock
        for s in sources:
            s.start()
        engine.start()
        end = float(clock.to_host(np.array([placed[-1].t1 + 1.0]))[0])
        while host_now() < end:
            time.sleep(0.2)
        engine.stop()
        for s in sources:
            s.stop()
        pose_health = next((s.health() for s in sources if s.modality == "pose"), None)

    def t_rec(p) -> float:
        return float(p.t_source) if p.t_source is not None else float("nan")

    pauses = [(a.t1, b.t0) for a, b in zip(placed[:-1], placed[1:])]
    in_pause = [p for p in preds if any(lo <= t_rec(p) - window_s and t_rec(p) <= hi for lo, hi in pauses)]
    still = sum(p.no_action for p in in_pause)
    ends = []
    for trial in placed:
        inside = [p for p in preds if trial.t0 < t_rec(p) <= trial.t1 + 0.25]
        ends.append(bool(inside) and inside[-1].label == trial.label)
    result = {
        "checkpoint": args.checkpoint, "trials": len(placed), "pause_s": args.pause, "window_s": window_s,
        "predictions": len(preds), "in_pauses": len(in_pause), "no_action_in_pauses": still,
        "no_action_share": round(still / max(1, len(in_pause)), 4),
        "trial_end_correct": int(sum(ends)), "trial_end_accuracy": round(sum(ends) / len(ends), 4),
        "no_action_elsewhere": sum(p.no_action for p in preds if p not in in_pause),
        "modalities": sorted({"+".join(p.modalities) for p in preds}),
        "pose_rate_hz": None if pose_health is None else round(pose_health.measured_rate, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
