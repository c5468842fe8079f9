"""UTD-MHAD reader: ``Depth/aA_sS_tT_depth.mat`` + ``Inertial/aA_sS_tT_inertial.mat`` → :class:`Clip`.

Depth becomes 1-channel uint8 video through :func:`depth_to_gray8` (the one mapping that
training and session import/replay share). A trial's streams cover the same interval but
their nominal rates do not match their lengths, so they are aligned by normalised time:
the trial lasts ``T / 30`` s (T depth frames at 30 fps) and the IMU samples are spread
evenly over that same duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import scipy.io

from trainer.data.cache import Cache, file_key
from trainer.data.clip import Clip, DataError, Stream

READER_VERSION = 1
SOURCE = "utd-mhad"
DEPTH_FPS = 30.0
IMU_NOMINAL_HZ = 50.0

#: Class names, index = action number - 1.
ACTIONS: tuple[str, ...] = (
    "swipe left", "swipe right", "wave", "clap", "throw", "arm cross", "basketball shoot",
    "draw x", "draw circle (clockwise)", "draw circle (counter-clockwise)", "draw triangle",
    "bowling", "boxing", "baseball swing", "tennis swing", "arm curl", "tennis serve", "push",
    "knock", "catch", "pickup and throw", "jog", "walk", "sit to stand", "stand to sit",
    "lunge", "squat",
)

#: Fixed depth → gray mapping (millimetres). Kinect v1's usable range is about 0.8–4 m and
#: the UTD-MHAD subjects are at 1.9–3.5 m (background already zeroed), so this range renders
#: them at gray ~170–40 while leaving headroom for nearer wearable/desk cameras.
DEPTH_NEAR_MM = 800.0
DEPTH_FAR_MM = 4000.0

_NAME = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_(depth|inertial)\.mat$")


def depth_to_gray8(depth_mm: np.ndarray) -> np.ndarray:
    """Render depth in millimetres as uint8 gray with a FIXED mapping (near = bright).

    0 (no reading) → 0; otherwise depth is clipped to [``DEPTH_NEAR_MM``, ``DEPTH_FAR_MM``]
    and mapped linearly to 255 (near) … 1 (far). The mapping never depends on the data
    (no per-trial min/max) because the live system only ever sees short windows.

    Args:
        depth_mm: any-shaped integer or float array of millimetres.

    Returns:
        uint8 array of the same shape.
    """
    d = np.asarray(depth_mm, dtype=np.float32)
    scaled = (np.clip(d, DEPTH_NEAR_MM, DEPTH_FAR_MM) - DEPTH_NEAR_MM) / (DEPTH_FAR_MM - DEPTH_NEAR_MM)
    gray = np.rint(255.0 - scaled * 254.0).astype(np.uint8)
    gray[d <= 0] = 0
    return gray


@dataclass(frozen=True)
class TrialRef:
    """One trial: action (1–27), subject, trial number and its file paths (which may not exist)."""

    action: int
    subject: int
    trial: int
    depth_path: Path
    inertial_path: Path

    @property
    def clip_id(self) -> str:
        return f"a{self.action}_s{self.subject}_t{self.trial}"

    @property
    def label(self) -> int:
        """0-based class index."""
        return self.action - 1

    @property
    def label_name(self) -> str:
        return ACTIONS[self.action - 1]


def list_trials(
    root: str | Path, subjects: Iterable[int] | None = None, actions: Iterable[int] | None = None
) -> list[TrialRef]:
    """All trials under ``root`` (with ``Depth/`` and/or ``Inertial/``), sorted by action, subject, trial.

    A trial is listed when either of its files exists; loading reports the missing one.
    Raises :class:`DataError` when ``root`` has neither folder.
    """
    root = Path(root)
    depth_dir, iner_dir = root / "Depth", root / "Inertial"
    if not depth_dir.is_dir() and not iner_dir.is_dir():
        raise DataError(f"{root}: not a UTD-MHAD folder (no Depth/ or Inertial/ inside)")
    subj = None if subjects is None else {int(s) for s in subjects}
    acts = None if actions is None else {int(a) for a in actions}
    found: set[tuple[int, int, int]] = set()
    for folder in (depth_dir, iner_dir):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            m = _NAME.match(f.name)
            if m is None:
                continue
            a, s, t = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if not 1 <= a <= len(ACTIONS):
                continue
            if (subj is None or s in subj) and (acts is None or a in acts):
                found.add((a, s, t))
    return [
        TrialRef(a, s, t, depth_dir / f"a{a}_s{s}_t{t}_depth.mat", iner_dir / f"a{a}_s{s}_t{t}_inertial.mat")
        for a, s, t in sorted(found)
    ]


def _load_mat_key(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=[key])
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError/... on corrupt files
        raise DataError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from exc
    if key not in mat:
        raise DataError(f"{path}: no {key!r} variable inside")
    return np.asarray(mat[key])


def load_depth(path: Path) -> np.ndarray:
    """``d_depth`` as uint16 ``[T, H, W]`` millimetres; :class:`DataError` naming the file when bad."""
    d = _load_mat_key(path, "d_depth")
    if d.ndim != 3 or d.shape[2] < 1:
        raise DataError(f"{path}: d_depth must be H×W×T, got shape {d.shape}")
    return np.ascontiguousarray(np.moveaxis(d, 2, 0)).astype(np.uint16, copy=False)


def load_inertial(path: Path) -> np.ndarray:
    """``d_iner`` as float32 ``[T, 6]`` (g, deg/s); :class:`DataError` naming the file when bad."""
    x = _load_mat_key(path, "d_iner")
    if x.ndim != 2 or x.shape[1] != 6 or x.shape[0] < 1:
        raise DataError(f"{path}: d_iner must be T×6, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: d_iner has non-finite values")
    return x.astype(np.float32)


def trial_timestamps(n_frames: int, n_imu: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame and IMU timestamps of a trial aligned by normalised time.

    The trial lasts ``n_frames / 30`` s; frame i is at ``i / 30`` and IMU sample j at
    ``j * duration / n_imu`` (both streams start at 0 and span the same interval).
    """
    duration = n_frames / DEPTH_FPS
    return np.arange(n_frames) / DEPTH_FPS, np.arange(n_imu) * (duration / n_imu)


def load_trial(ref: TrialRef, modalities: Sequence[str] = ("video", "imu")) -> Clip:
    """Read one trial as a :class:`Clip` with the requested modalities (``"video"``, ``"imu"``).

    The trial's duration always comes from the depth file, so it is read even for IMU-only clips.
    Video rate is 30 fps; the IMU stream's ``rate`` is its effective rate over that duration
    (about 80 Hz, not the nominal 50 Hz, see the module docstring).

    Raises:
        DataError: a needed file is missing or corrupt (the message names it).
    """
    bad = [m for m in modalities if m not in ("video", "imu")]
    if bad:
        raise ValueError(f"UTD-MHAD has video (depth) and imu only; cannot load {bad}")
    depth = load_depth(ref.depth_path)
    streams: dict[str, Stream] = {}
    n_frames = depth.shape[0]
    iner = load_inertial(ref.inertial_path) if "imu" in modalities else None
    t_video, t_imu = trial_timestamps(n_frames, 1 if iner is None else len(iner))
    if "video" in modalities:
        streams["video"] = Stream(depth_to_gray8(depth)[..., None], t_video, DEPTH_FPS)
    if iner is not None:
        streams["imu"] = Stream(iner, t_imu, len(iner) / (n_frames / DEPTH_FPS))
    return trial_clip(ref, streams)


def trial_clip(ref: TrialRef, streams: dict[str, Stream]) -> Clip:
    """A :class:`Clip` of one trial holding ``streams`` (its identity and label from ``ref``)."""
    return Clip(clip_id=ref.clip_id, streams=streams, label=ref.label, label_name=ref.label_name,
                subject=str(ref.subject), session=str(ref.trial), split=None, source=SOURCE)


class UtdMhadDataset:
    """The trials of some subjects (and actions) as Clips.

    Indexing (``ds[i]``) raises :class:`DataError` for a bad trial; iterating skips it and
    records ``(path-or-clip_id, reason)`` in :attr:`skipped`.

    Args:
        root: the UTD-MHAD folder (``Depth/``, ``Inertial/``).
        subjects: subject numbers to include; all when None.
        actions: action numbers (1–27) to include; all when None.
        modalities: subset of ``("video", "imu", "pose")``.
        split: value written into each clip's ``split``.
        cache: decoded clips are cached here when given.
        pose_reader: a trial's pose stream, needed when ``modalities`` holds ``"pose"`` (the
            recordings have none: :meth:`trainer.data.utd_pose.TrialPoseReader.stream` extracts
            it from the depth frames and caches it).
    """

    def __init__(
        self,
        root: str | Path,
        subjects: Iterable[int] | None,
        actions: Iterable[int] | None = None,
        modalities: Sequence[str] = ("video", "imu"),
        split: str | None = None,
        cache: Cache | None = None,
        pose_reader: Callable[[TrialRef], Stream] | None = None,
    ) -> None:
        if "pose" in modalities and pose_reader is None:
            raise ValueError("UtdMhadDataset: pose needs a pose_reader (see trainer.data.utd_pose)")
        self.root = Path(root)
        self.modalities = tuple(modalities)
        self.split = split
        self.cache = cache
        self.pose_reader = pose_reader
        self.trials = list_trials(self.root, subjects, actions)
        self.skipped: list[tuple[str, str]] = []
        self.class_names = ACTIONS

    def __len__(self) -> int:
        return len(self.trials)

    @property
    def labels(self) -> list[int]:
        """0-based label of every trial (known without loading)."""
        return [t.label for t in self.trials]

    def __getitem__(self, index: int) -> Clip:
        ref = self.trials[index]
        clip = self._recorded(ref, [m for m in self.modalities if m != "pose"])
        if self.pose_reader is not None and "pose" in self.modalities:
            clip.streams["pose"] = self.pose_reader(ref)
        clip.split = self.split
        return clip

    def _recorded(self, ref: TrialRef, modalities: Sequence[str]) -> Clip:
        if not modalities:  # pose only: the clip's identity without decoding the depth twice
            return trial_clip(ref, {})
        if self.cache is None:
            return load_trial(ref, modalities)
        files = [ref.depth_path] + ([ref.inertial_path] if "imu" in modalities else [])
        for f in files:
            if not f.is_file():
                raise DataError(f"{f}: file is missing")
        key = {
            "reader": SOURCE,
            "version": READER_VERSION,
            "modalities": sorted(modalities),  # the same clip whatever order they were asked in
            "files": [file_key(f) for f in files],
        }
        return self.cache.cached_clip(key, lambda: load_trial(ref, modalities))

    def __iter__(self) -> Iterator[Clip]:
        for i in range(len(self.trials)):
            try:
                yield self[i]
            except DataError as exc:
                self.skipped.append((self.trials[i].clip_id, str(exc)))
