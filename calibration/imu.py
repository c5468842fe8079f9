"""IMU intrinsics: gyro bias/noise from a still period, accelerometer offset/scale from six poses.

Data are ``[n, 6]`` arrays (accel x,y,z in g, then gyro x,y,z in deg/s) at a known rate.
Nothing here prompts or prints: the CLI's guided mode and the GUI call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

from calibration.errors import CalibrationError
from calibration.profile import ImuCalibration

POSES = ("+x", "-x", "+y", "-y", "+z", "-z")
"""The six static poses, named by the sensor axis that points up (reads +1 g)."""


@dataclass(frozen=True)
class StaticSegment:
    """A still stretch of a recording: samples ``[start, stop)`` and their mean reading."""

    start: int
    stop: int
    mean: np.ndarray  # [6]
    std: np.ndarray  # [6]
    pose: str | None  # one of POSES, or None when gravity is not along one axis

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class StillThresholds:
    """Per-sample moving-window std limits below which the device counts as still."""

    accel_g: float
    gyro_dps: float


def _check(data: np.ndarray, rate: float, what: str) -> np.ndarray:
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise CalibrationError(f"{what}: IMU data must be [n, 6] (accel g, gyro deg/s), got shape {arr.shape}")
    if not rate or rate <= 0:
        raise CalibrationError(f"{what}: sample rate must be positive, got {rate!r}")
    if len(arr) and np.all(np.isnan(arr[:, 3:])):
        # an accelerometer-only device (the serial source reports its gyro as NaN): calibrate the
        # accelerometer; the gyro entries stay zero
        arr = arr.copy()
        arr[:, 3:] = 0.0
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise CalibrationError(f"{what}: non-finite IMU value at sample {bad}")
    return arr


def moving_std(data: np.ndarray, window: int) -> np.ndarray:
    """Centred moving standard deviation per column (``window`` samples)."""
    window = max(int(window), 2)
    mean = uniform_filter1d(data, window, axis=0, mode="nearest")
    mean_sq = uniform_filter1d(data * data, window, axis=0, mode="nearest")
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def still_thresholds(
    data: np.ndarray, rate: float, window_s: float = 0.5, factor: float = 4.0,
    min_accel_g: float = 0.002, min_gyro_dps: float = 0.2,
) -> StillThresholds:
    """Adaptive stillness limits: ``factor`` × the 10th-percentile moving std (floored).

    The quietest tenth of any calibration recording is the device at rest, so its noise sets the
    scale; the floors keep a perfectly quantised sensor from making every wobble count as motion.
    """
    arr = _check(data, rate, "still_thresholds")
    s = moving_std(arr, round(window_s * rate))
    acc = float(np.percentile(s[:, :3].max(axis=1), 10))
    gyr = float(np.percentile(s[:, 3:].max(axis=1), 10))
    return StillThresholds(max(factor * acc, min_accel_g), max(factor * gyr, min_gyro_dps))


def still_mask(
    data: np.ndarray, rate: float, window_s: float = 0.5, thresholds: StillThresholds | None = None
) -> np.ndarray:
    """Boolean ``[n]``: True where the moving-window std of every accel and gyro axis and of the
    accel magnitude is below the limits (per-axis accel std also rejects slow constant-rate turns).
    """
    arr = _check(data, rate, "still_mask")
    win = max(round(window_s * rate), 2)
    thr = thresholds or still_thresholds(arr, rate, window_s)
    s = moving_std(arr, win)
    mag = np.linalg.norm(arr[:, :3], axis=1, keepdims=True)
    s_mag = moving_std(mag, win)[:, 0]
    ok = (s[:, :3].max(axis=1) < thr.accel_g) & (s[:, 3:].max(axis=1) < thr.gyro_dps) & (s_mag < thr.accel_g)
    # A centred window already rejects samples near motion; a quarter window more is a safety margin
    # against the slow onset of a movement that stays under the limits at first.
    return _erode(ok, win // 4)


def _erode(mask: np.ndarray, k: int) -> np.ndarray:
    if k <= 0:
        return mask
    counts = uniform_filter1d(mask.astype(np.float64), 2 * k + 1, mode="constant", cval=0.0)
    return counts > 1.0 - 0.5 / (2 * k + 1)


def classify_pose(mean_accel: np.ndarray, min_alignment: float = 0.9) -> str | None:
    """The pose (``"+x"`` … ``"-z"``) whose axis carries gravity, or None when tilted.

    ``min_alignment``: the dominant axis must hold at least this fraction of the vector's norm.
    """
    a = np.asarray(mean_accel, dtype=np.float64)[:3]
    norm = float(np.linalg.norm(a))
    if norm < 0.3:
        return None
    axis = int(np.argmax(np.abs(a)))
    if abs(a[axis]) < min_alignment * norm:
        return None
    return ("+" if a[axis] > 0 else "-") + "xyz"[axis]


def find_static_segments(
    data: np.ndarray, rate: float, min_duration_s: float = 1.0, window_s: float = 0.5,
    thresholds: StillThresholds | None = None,
) -> list[StaticSegment]:
    """Still stretches of at least ``min_duration_s``, in time order, each with its pose."""
    arr = _check(data, rate, "find_static_segments")
    mask = still_mask(arr, rate, window_s, thresholds)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    segments = []
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start < min_duration_s * rate:
            continue
        seg = arr[start:stop]
        mean = seg.mean(axis=0)
        segments.append(StaticSegment(int(start), int(stop), mean, seg.std(axis=0), classify_pose(mean)))
    return segments


def find_still_period(data: np.ndarray, rate: float, min_duration_s: float = 1.0,
                      window_s: float = 0.5) -> StaticSegment:
    """The longest still stretch; CalibrationError when none lasts ``min_duration_s``."""
    segments = find_static_segments(data, rate, min_duration_s, window_s)
    if not segments:
        raise CalibrationError(
            f"no still period of {min_duration_s:.1f} s found in {len(data) / rate:.1f} s of IMU data: "
            "put the device on a table and keep it still"
        )
    return max(segments, key=lambda s: s.length)


def gyro_bias_noise(still: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gyro bias (mean) and noise std (deg/s) of samples ``[n, 6]`` (or ``[n, 3]`` gyro) taken at rest."""
    arr = np.asarray(still, dtype=np.float64)
    gyro = arr[:, 3:6] if arr.shape[1] == 6 else arr
    if len(gyro) < 2:
        raise CalibrationError(f"gyro bias needs at least 2 still samples, got {len(gyro)}")
    return gyro.mean(axis=0), gyro.std(axis=0, ddof=1)


def accel_from_six_poses(pose_means: dict[str, np.ndarray],
                         full_matrix: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Accelerometer offset (g), scale, and optional 3×3 matrix from the mean reading of each pose.

    For each axis, ``(up + down) / 2`` is the offset and ``(up − down) / 2`` is scale × 1 g. With
    ``full_matrix`` the columns of ``M`` are ``(up − down) / 2`` of whole vectors (cross-axis terms)
    and the offset is the mean of the three axes' midpoints.
    """
    missing = [p for p in POSES if p not in pose_means]
    if missing:
        raise CalibrationError(f"six-pose accelerometer calibration: missing pose(s) {', '.join(missing)}")
    up = np.stack([np.asarray(pose_means["+" + a], dtype=np.float64)[:3] for a in "xyz"])
    down = np.stack([np.asarray(pose_means["-" + a], dtype=np.float64)[:3] for a in "xyz"])
    half_diff = (up - down) / 2.0  # row k: M[:, k]
    mid = (up + down) / 2.0
    offset = np.diag(mid).copy()
    scale = np.diag(half_diff).copy()
    if np.any(scale <= 0.1):
        bad = "xyz"[int(np.argmin(scale))]
        raise CalibrationError(
            f"six-pose accelerometer calibration: axis {bad} reads {scale.min():.3f} g between up and down; "
            "were the +/- poses swapped?"
        )
    matrix = None
    if full_matrix:
        matrix = half_diff.T.copy()
        offset = mid.mean(axis=0)
    return offset, scale, matrix


@dataclass(frozen=True)
class ImuCalibrationResult:
    """What :func:`calibrate_imu_recording` found, with the segments it used (for display)."""

    calibration: ImuCalibration
    still: StaticSegment
    poses: dict[str, StaticSegment]
    segments: list[StaticSegment]


def calibrate_imu_recording(
    data: np.ndarray, rate: float, min_pose_s: float = 1.0, full_matrix: bool = False, window_s: float = 0.5,
) -> ImuCalibrationResult:
    """Gyro bias/noise and six-pose accelerometer calibration from one continuous recording.

    The recording holds the device still in each of the six poses (any order, ≥ ``min_pose_s``
    each) with movement between them; the longest still stretch gives the gyro bias and noise.
    When a pose appears more than once its longest stretch is used.
    """
    arr = _check(data, rate, "calibrate_imu_recording")
    segments = find_static_segments(arr, rate, min_pose_s, window_s)
    if not segments:
        raise CalibrationError(
            f"no still period of {min_pose_s:.1f} s found in {len(arr) / rate:.1f} s of IMU data"
        )
    poses: dict[str, StaticSegment] = {}
    for seg in segments:
        if seg.pose is not None and (seg.pose not in poses or seg.length > poses[seg.pose].length):
            poses[seg.pose] = seg
    missing = [p for p in POSES if p not in poses]
    if missing:
        found = ", ".join(p for p in POSES if p in poses) or "none"
        raise CalibrationError(
            f"six-pose calibration: pose(s) {', '.join(missing)} not found (found {found}; "
            f"{len(segments)} still stretches); hold each axis up and down still for {min_pose_s:.0f} s or more"
        )
    still = max(segments, key=lambda s: s.length)
    return ImuCalibrationResult(
        calibration=calibration_from_segments(arr, still, poses, full_matrix, rate),
        still=still, poses=poses, segments=segments,
    )


def calibration_from_segments(
    data: np.ndarray, still: StaticSegment, poses: dict[str, StaticSegment], full_matrix: bool, rate: float,
) -> ImuCalibration:
    """An :class:`ImuCalibration` from a chosen still segment and one segment per pose."""
    bias, noise = gyro_bias_noise(data[still.start:still.stop])
    offset, scale, matrix = accel_from_six_poses({p: s.mean for p, s in poses.items()}, full_matrix)
    return ImuCalibration(
        accel_offset=offset, accel_scale=scale, accel_matrix=matrix,
        gyro_bias=bias, gyro_noise_std=noise,
        accel_noise_std=data[still.start:still.stop, :3].std(axis=0, ddof=1),
        still_seconds=still.length / rate,
    )


def calibrate_from_pose_captures(
    captures: dict[str, np.ndarray], rate: float, full_matrix: bool = False, trim_s: float = 0.25,
) -> ImuCalibration:
    """Calibration from one capture per pose (the guided mode): ``{pose: samples [n, 6]}``.

    Each capture is trimmed by ``trim_s`` at both ends (the keypress jolt) and checked to be still
    and in its pose; the longest capture's still part gives the gyro bias.
    """
    trim = int(round(trim_s * rate))
    segs: dict[str, StaticSegment] = {}
    merged = []
    offset = 0
    for pose, samples in captures.items():
        arr = _check(samples, rate, f"capture {pose}")
        if len(arr) <= 2 * trim + 2:
            raise CalibrationError(f"capture {pose}: only {len(arr)} samples; hold still longer")
        arr = arr[trim:len(arr) - trim]
        seg = check_pose_capture(arr, pose, rate)
        segs[pose] = StaticSegment(offset, offset + len(arr), seg.mean, seg.std, seg.pose)
        merged.append(arr)
        offset += len(arr)
    data = np.concatenate(merged)
    still = max(segs.values(), key=lambda s: s.length)
    return calibration_from_segments(data, still, segs, full_matrix, rate)


def check_pose_capture(samples: np.ndarray, expected: str | None, rate: float, max_accel_std_g: float = 0.03,
                       max_gyro_std_dps: float = 3.0) -> StaticSegment:
    """Validate one guided capture: still enough and (when ``expected``) in the expected pose.

    Raises CalibrationError with what to do differently.
    """
    arr = _check(samples, rate, f"capture {expected or 'still'}")
    mean, std = arr.mean(axis=0), arr.std(axis=0)
    if std[:3].max() > max_accel_std_g or std[3:].max() > max_gyro_std_dps:
        raise CalibrationError(
            f"capture {expected or 'still'}: the device moved (accel std {std[:3].max():.3f} g, "
            f"gyro std {std[3:].max():.2f} deg/s); keep it still and try again"
        )
    pose = classify_pose(mean)
    if expected is not None and pose != expected:
        raise CalibrationError(
            f"capture {expected}: gravity reads {np.round(mean[:3], 3).tolist()} g, which is pose {pose or 'tilted'}; "
            f"place the device with {expected.upper()} pointing up"
        )
    return StaticSegment(0, len(arr), mean, std, pose)
