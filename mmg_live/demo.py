"""The built-in demo source: one recorded session made of real dataset trials, replayed.

``mmg-live --demo`` needs no hardware. On first run :func:`demo_session` writes a session
folder (the same format ``mmg-live --record`` writes) under ``~/.cache/mmg-live/demo/``: UTD-MHAD
trials of subjects the default model never trained on (depth video + IMU), one after another
with a short pause between them, and a microphone track of spoken digits from FSDD's held-out
speaker in the pauses. Every trial is a labelled segment in ``session.json``, so the same folder
serves the end-to-end tests. The data come from the dataset folders (``$MMG_DATA``, the
project's ``../shared/data``, or where ``mmg-data download`` put them); nothing derived from them
is shipped in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from devices.base import Chunk
from devices.session import SESSION_JSON

DEMO_VERSION = 3
DEMO_LABEL = "DEMO: replay of recorded UTD-MHAD trials (depth video + IMU) and FSDD speech, not a live camera"
#: Test subjects of the default model and, from UTD-MHAD's 4 trials per subject, the one used.
DEMO_SUBJECTS = (2, 4, 6)


class DemoError(RuntimeError):
    """The demo session cannot be built; the message says which data set is missing and where it looked."""


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/mmg-live`` (default ``~/.cache/mmg-live``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmg-live"


def dataset_candidates(name: str) -> list[Path]:
    """Where a data set is looked for, in order."""
    out = []
    if os.environ.get("MMG_DATA"):
        out.append(Path(os.environ["MMG_DATA"]) / name)
    repo = Path(__file__).resolve().parent.parent
    out += [repo.parent / "shared" / "data" / name, cache_root() / "datasets" / name]
    return out


def find_dataset(name: str) -> Path:
    """The first existing folder of :func:`dataset_candidates`; :class:`DemoError` if none."""
    for path in dataset_candidates(name):
        if path.is_dir():
            return path
    looked = ", ".join(str(p) for p in dataset_candidates(name))
    raise DemoError(f"the demo needs the {name} data set; not found in {looked}. "
                    f"Fetch it with `mmg-data download {name} {cache_root() / 'datasets' / name}` "
                    f"or set MMG_DATA to the folder that holds it")


@dataclass(frozen=True)
class DemoTrial:
    """One trial placed in the demo session: its label and session-time span."""

    label: str
    action: int
    subject: int
    trial: int
    t0: float
    t1: float


def write_trial_session(folder: Path, utd_root: Path, trials: Sequence[tuple[int, int, int]],
                        fsdd_root: Path | None = None, gap_s: float = 2.0,
                        speaker: str = "nicolas") -> list[DemoTrial]:
    """Write UTD-MHAD ``trials`` ((action, subject, trial) tuples) back to back into one session.

    Each trial keeps its own timing and is shifted to start ``gap_s`` after the previous one
    ended. In the pauses the person stands still: for the first half of a pause the camera keeps
    delivering the previous trial's last frame and the IMU its last sample, for the second half
    the next trial's first frame and sample (30 fps / the trial's IMU rate) — exactly the edge
    replication :func:`mmg_live.modalities.preprocess` applies to a window reaching past either
    end of a trial in training, and the streams never stop, as a live device's would not.
    With ``fsdd_root``, the audio stream runs the whole time at the recordings' rate: silence
    with one spoken digit of ``speaker`` in each pause.
    Returns the placed trials (also written as labelled segments).
    """
    from devices.session import SessionWriter
    from trainer.data.fsdd import list_recordings, load_recording
    from trainer.data.utd_mhad import ACTIONS, list_trials, load_trial

    wanted = {(a, s, t) for a, s, t in trials}
    refs = {(r.action, r.subject, r.trial): r for r in list_trials(utd_root)}
    refs = {key: ref for key, ref in refs.items() if key in wanted}
    missing = [x for x in trials if tuple(x) not in refs]
    if missing:
        raise DemoError(f"{utd_root}: no UTD-MHAD trial(s) {missing[:3]} (action, subject, trial)")
    speech = []
    if fsdd_root is not None:
        speech = [load_recording(r) for r in list_recordings(fsdd_root, [speaker]) if r.index == 0]
        if not speech:
            raise DemoError(f"{fsdd_root}: no FSDD recordings of speaker {speaker!r}")
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    devices = {"video": {"device": "UTD-MHAD Kinect v1 depth (replay)", "fps": 30.0, "video_kind": "depth"},
               "imu": {"device": "UTD-MHAD inertial (replay)", "units": "g, deg/s"}}
    if speech:
        devices["audio"] = {"device": f"FSDD speaker {speaker} (replay)", "rate": speech[0].streams["audio"].rate}
    placed: list[DemoTrial] = []
    t = gap_s
    metadata = {"source": "mmg-live demo", "demo_version": DEMO_VERSION, "label": DEMO_LABEL}
    with SessionWriter(tmp, devices, metadata=metadata) as writer:
        for key in trials:
            clip = load_trial(refs[tuple(key)])
            video, imu = clip.streams["video"], clip.streams["imu"]
            duration = len(video) / video.rate
            start = t - gap_s / 2 if placed else t - gap_s
            _hold(writer, "video", video.data[:1], start, t, video.rate)
            _hold(writer, "imu", imu.data[:1], start, t, imu.rate)
            writer.write(Chunk("video", video.timestamps + t, video.data, "video"))
            writer.write(Chunk("imu", imu.timestamps + t, imu.data, "imu"))
            label = ACTIONS[key[0] - 1]
            writer.add_segment(label, t, t + duration)
            placed.append(DemoTrial(label, key[0], key[1], key[2], t, t + duration))
            end_video = t + video.timestamps[-1] + 1.0 / video.rate
            end_imu = t + imu.timestamps[-1] + 1.0 / imu.rate
            t += duration + gap_s
            _hold(writer, "video", video.data[-1:], end_video, t - gap_s / 2, video.rate)
            _hold(writer, "imu", imu.data[-1:], end_imu, t - gap_s / 2, imu.rate)
        if speech:
            _write_speech(writer, speech, placed, gap_s, t)
        writer.update_metadata(trials=[vars(p) for p in placed])
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return placed


def _hold(writer, stream: str, sample: np.ndarray, t0: float, t1: float, rate: float) -> None:
    """Repeat one sample at ``rate`` over ``[t0, t1)`` (a still person, a resting sensor)."""
    n = max(0, int(np.ceil((t1 - t0) * rate - 1e-9)))
    if n:
        writer.write(Chunk(stream, t0 + np.arange(n) / rate, np.repeat(sample, n, axis=0), stream))


def _write_speech(writer, speech: list, placed: list[DemoTrial], gap_s: float, end: float) -> None:
    rate = speech[0].streams["audio"].rate
    n = int(round(end * rate))
    audio = np.random.default_rng(0).normal(0.0, 1e-3, (n, 1)).astype(np.float32)
    starts = [0.0] + [p.t1 for p in placed[:-1]]
    for k, t0 in enumerate(starts):
        data = speech[k % len(speech)].streams["audio"].data[: int(gap_s * rate * 0.8)]
        i0 = int((t0 + 0.1 * gap_s) * rate)
        audio[i0:i0 + len(data)] += data[: max(0, n - i0)]
    ts = np.arange(n) / rate
    block = 512
    for i in range(0, n, block):
        writer.write(Chunk("audio", ts[i:i + block], audio[i:i + block], "audio"))


def demo_trials(actions: Iterable[int] = range(1, 28), subjects: Sequence[int] = DEMO_SUBJECTS,
                trial: int = 1) -> list[tuple[int, int, int]]:
    """Every action once, subjects taking turns: the demo's (action, subject, trial) list."""
    return [(a, subjects[k % len(subjects)], trial) for k, a in enumerate(actions)]


def demo_session(root: Path | None = None, utd: Path | None = None, fsdd: Path | None = None) -> Path:
    """The demo session folder, written on first use (about 10 s); returns its path."""
    folder = (root or cache_root() / "demo") / f"session-v{DEMO_VERSION}"
    if (folder / SESSION_JSON).is_file():
        return folder
    utd = utd or find_dataset("utd-mhad")
    try:
        fsdd = fsdd or find_dataset("fsdd")
    except DemoError:
        fsdd = None  # video + IMU only
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_trial_session(folder, utd, demo_trials(), fsdd)
    return folder


def session_trials(folder: Path) -> list[DemoTrial]:
    """The trials a demo/trial session holds (from its session.json)."""
    meta = json.loads((Path(folder) / SESSION_JSON).read_text())
    return [DemoTrial(**t) for t in meta.get("trials", [])]
