"""Turn dataset trials into ``mmg-live`` session folders (so replay and training see one format).

UTD-MHAD: each trial becomes ``OUT/aA_sS_tT/`` written with
:class:`devices.session.SessionWriter`: depth rendered by
:func:`trainer.data.utd_mhad.depth_to_gray8` as 1-channel video (lossless FFV1) with the
trial's true timing (frame i at i/30 s), the IMU with its normalised-time timestamps, and
the action as one labelled segment covering the trial. ``subject``, ``source`` and ``trial``
are written to ``session.json`` as the writer's extra metadata. Existing session folders are never
overwritten (they are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from devices.base import Chunk
from devices.session import SESSION_JSON, SessionWriter
from trainer.data.clip import DataError
from trainer.data.utd_mhad import DEPTH_FAR_MM, DEPTH_NEAR_MM, list_trials, load_trial


@dataclass
class ImportReport:
    """What an import wrote and what it skipped (``(name, reason)``)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def import_utd_mhad(
    root: str | Path,
    out: str | Path,
    subjects: Iterable[int] | None = None,
    actions: Iterable[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Write one session folder per UTD-MHAD trial under ``out``; bad or existing trials are skipped."""
    out = Path(out)
    report = ImportReport()
    trials = list_trials(root, subjects, actions)
    for k, ref in enumerate(trials, 1):
        folder = out / ref.clip_id
        if (folder / SESSION_JSON).exists():
            report.skipped.append((ref.clip_id, f"{folder} already holds a session; not overwritten"))
            continue
        try:
            clip = load_trial(ref)
        except DataError as exc:
            report.skipped.append((ref.clip_id, str(exc)))
            continue
        video, imu = clip.streams["video"], clip.streams["imu"]
        placement = "right wrist" if ref.action <= 21 else "right thigh"
        devices = {
            "video": {
                "device": "UTD-MHAD Kinect v1 depth",
                "video_kind": "depth",
                "fps": video.rate,
                "rendering": f"depth_to_gray8 near={DEPTH_NEAR_MM:g}mm far={DEPTH_FAR_MM:g}mm",
                "file": str(ref.depth_path),
            },
            "imu": {
                "device": "UTD-MHAD inertial",
                "placement": placement,
                "units": "g, deg/s",
                "file": str(ref.inertial_path),
            },
        }
        metadata = {"subject": clip.subject, "source": "utd-mhad", "trial": ref.trial}
        writer = SessionWriter(folder, devices, metadata=metadata)
        try:
            writer.write(Chunk("video", video.timestamps, video.data, "video"))
            writer.write(Chunk("imu", imu.timestamps, imu.data, "imu"))
            writer.add_segment(clip.label_name or str(clip.label), 0.0, len(video) / video.rate)
        finally:
            writer.close()
        report.written.append(folder)
        if progress is not None:
            progress(f"[{k}/{len(trials)}] {folder}")
    return report
