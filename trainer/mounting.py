"""IMU accuracy with the sensor turned on the wrist: the issue-29 table for a checkpoint.

``python -m trainer.mounting CKPT --utd DIR`` scores the checkpoint on UTD-MHAD's test subjects
(IMU only, the window ending at each clip's last IMU sample) with the IMU turned by each of the
:data:`MOUNTINGS`, uncalibrated and after the two-pose mounting calibration
(:mod:`calibration.mounting`), simulated from the recordings: each subject's hanging pose is the
still start of one of their own wrist trials, the forward pose 1 g along the reference with that
trial's noise, both read through the turned sensor. Then custom actions: 5-way 5-shot IMU → IMU on
the novel classes (subjects 1-6), support recorded at the canonical mounting and queries at each
turned one, uncalibrated.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from calibration.mounting import CANONICAL_FORWARD, mounting_rotation
from mmg_live.checkpoint import load_checkpoint
from mmg_live.models.mmg import MMGModel
from trainer.data.clip import Clip
from trainer.data.utd_mhad import list_trials, load_inertial
from trainer.datasets import class_count, class_subset, load_clips
from trainer.evaluate import accuracy, embeddings, few_shot
from trainer.windows import build_window_set


def axis_rotation(axis: str, degrees: float) -> np.ndarray:
    """Right-handed 3×3 rotation about a sensor axis (``"x"``, ``"y"`` or ``"z"``)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


#: The issue's mountings, ``reading = M @ canonical``.
MOUNTINGS: dict[str, np.ndarray] = {
    "90x": axis_rotation("x", 90), "90y": axis_rotation("y", 90), "90z": axis_rotation("z", 90),
    "180x": axis_rotation("x", 180), "45z30x": axis_rotation("x", 30) @ axis_rotation("z", 45),
}

TEST_SUBJECTS = ("2", "4", "6")
WRIST_ACTIONS = range(1, 22)  #: UTD-MHAD actions 1-21 (22-27: the sensor on the thigh)


def turned(data: np.ndarray, mounting: np.ndarray) -> np.ndarray:
    """IMU samples ``[n, 6]`` as a sensor turned by ``mounting`` reads them (accel and gyro together)."""
    out = np.array(data, dtype=np.float64)
    out[:, :3] = out[:, :3] @ mounting.T
    out[:, 3:] = out[:, 3:] @ mounting.T
    return out


def still_start(utd: Path, subject: str, samples: int = 15, max_std_g: float = 0.03) -> np.ndarray:
    """``[samples, 6]``: the first wrist trial of ``subject`` whose first samples are still (arm hanging)."""
    for ref in list_trials(utd, subjects=[int(subject)], actions=WRIST_ACTIONS):
        if not ref.inertial_path.is_file():
            continue
        x = load_inertial(ref.inertial_path)[:samples].astype(np.float64)
        if x[:, :3].std(axis=0).max() < max_std_g:
            return x
    raise ValueError(f"{utd}: no wrist trial of subject {subject} starts still")


def simulated_calibration(hang_samples: np.ndarray, mounting: np.ndarray) -> np.ndarray:
    """The calibration a person with this hanging pose would get with the sensor turned by ``mounting``."""
    noise = hang_samples[:, :3] - hang_samples[:, :3].mean(axis=0)
    forward = noise + CANONICAL_FORWARD / np.linalg.norm(CANONICAL_FORWARD)
    return mounting_rotation((hang_samples[:, :3] @ mounting.T).mean(axis=0), (forward @ mounting.T).mean(axis=0))


def test_clips(model: MMGModel, utd: Path) -> list[Clip]:
    """The test subjects' IMU clips of the model's classes, labelled with its class indices."""
    loaded = load_clips("utd-mhad", utd, list(TEST_SUBJECTS), ["imu"])
    index = {name: i for i, name in enumerate(model.class_names)}
    return [replace(c, label=index[loaded.class_names[c.label]]) for c in loaded.clips
            if loaded.class_names[c.label] in index]


def imu_accuracy(model: MMGModel, clips: Sequence[Clip], transform: Callable[[Clip], np.ndarray]) -> float:
    """IMU-only top-1 over ``clips`` with each clip's IMU samples replaced by ``transform(clip)``."""
    moved = [replace(c, streams={"imu": replace(c.streams["imu"], data=transform(c))}) for c in clips]
    return float(accuracy(model, build_window_set(moved, model.config.specs, ["imu"]), ["imu"])["top1"])


def turned_clips(clips: Sequence[Clip], mounting: np.ndarray) -> list[Clip]:
    """``clips`` with their IMU read by a sensor turned by ``mounting``."""
    return [replace(c, streams={**c.streams, "imu": replace(c.streams["imu"], data=turned(c.streams["imu"].data,
                                                                                            mounting))})
            for c in clips]


def fewshot_across_mountings(model: MMGModel, utd: Path, episodes: int = 600) -> list[dict[str, Any]]:
    """5-way 5-shot IMU → IMU on the novel classes (subjects 1-6): support at the canonical mounting,
    queries at each of :data:`MOUNTINGS` (and at the canonical one), uncalibrated."""
    novel = set(class_subset("novel", "utd-mhad", class_count("utd-mhad", utd)))
    loaded = load_clips("utd-mhad", utd, ["1", "2", "3", "4", "5", "6"], ["imu"])
    clips = [c for c in loaded.clips if c.label in novel]
    labels = [c.label for c in clips]
    specs = model.config.specs

    def embed(cs: Sequence[Clip]):
        return embeddings(model, build_window_set(cs, specs, ["imu"]), ["imu"])

    support = embed(clips)
    rows = []
    for name, m in {"none": np.eye(3), **MOUNTINGS}.items():
        res = few_shot(support, support if name == "none" else embed(turned_clips(clips, m)), labels,
                       episodes=episodes)
        rows.append({"support": "none", "query": name, **res.to_dict()})
    return rows


def mounting_table(model: MMGModel, utd: Path) -> dict[str, Any]:
    """``{"clips", "canonical", "rows": [{"mounting", "uncalibrated", "calibrated"}]}`` (top-1, 0..1)."""
    clips = test_clips(model, utd)
    hang = {s: still_start(utd, s) for s in TEST_SUBJECTS}
    rows = []
    for name, m in MOUNTINGS.items():
        calibration = {s: simulated_calibration(h, m) for s, h in hang.items()}
        rows.append({
            "mounting": name,
            "uncalibrated": imu_accuracy(model, clips, lambda c, m=m: turned(c.streams["imu"].data, m)),
            "calibrated": imu_accuracy(model, clips, lambda c, m=m, cal=calibration: turned(
                turned(c.streams["imu"].data, m), cal[c.subject])),
        })
    return {"clips": len(clips), "canonical": imu_accuracy(model, clips, lambda c: c.streams["imu"].data),
            "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.mounting", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--utd", type=Path, required=True, help="UTD-MHAD root")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--episodes", type=int, default=600, help="few-shot episodes per row (default 600)")
    args = parser.parse_args(argv)
    model, _ = load_checkpoint(args.checkpoint, device="cpu")
    table = mounting_table(model, args.utd)
    table["fewshot"] = fewshot_across_mountings(model, args.utd, args.episodes)
    if args.json:
        print(json.dumps(table))
        return 0
    print(f"IMU only, test subjects {', '.join(TEST_SUBJECTS)} ({table['clips']} clips); canonical "
          f"{table['canonical']:.1%}\nmounting  uncalibrated  calibrated")
    for r in table["rows"]:
        print(f"{r['mounting']:8s}  {r['uncalibrated']:12.1%}  {r['calibrated']:10.1%}")
    print("novel classes, 5-way 5-shot IMU -> IMU, support at the canonical mounting, uncalibrated:")
    for r in table["fewshot"]:
        print(f"  queries at {r['query']:8s} {r['acc']:6.1%} ± {r['ci95']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
