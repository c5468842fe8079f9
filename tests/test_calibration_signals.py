"""Test inputs for the calibration tests, built from REAL recordings (UTD-MHAD IMU/depth, FSDD audio).

Imported by the other ``test_calibration_*`` files; its own tests check that the builders inject
what they claim. Nothing here is copied into the repository: the recordings are read in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import soundfile
from scipy.signal import resample_poly
from scipy.spatial.transform import Rotation

IMU_RATE_UTD = 50.0


# ---- IMU: real still noise and six poses --------------------------------------------------------
def load_inertial(utd_dir: Path, name: str) -> np.ndarray:
    """``d_iner`` (T×6: accel g, gyro deg/s, 50 Hz) of ``Inertial/<name>_inertial.mat``."""
    return scipy.io.loadmat(utd_dir / "Inertial" / f"{name}_inertial.mat")["d_iner"].astype(np.float64)


def real_still_windows(utd_dir: Path, count: int = 20, window: int = 25) -> list[np.ndarray]:
    """The ``count`` quietest real ``window``-sample stretches of UTD-MHAD IMU data (one per file).

    Searched in actions 24–27 (sit/stand, lunge, squat: the thigh sensor rests at the start or end).
    Each is returned raw (gravity included): ``[window, 6]``.
    """
    found = []
    for path in sorted((utd_dir / "Inertial").glob("a2[4-7]_s*_t*_inertial.mat")):
        d = scipy.io.loadmat(path)["d_iner"].astype(np.float64)
        w = np.lib.stride_tricks.sliding_window_view(d, window, axis=0)  # [n-w+1, 6, w]
        score = w[:, 3:, :].std(axis=-1).max(axis=1)
        i = int(np.argmin(score))
        found.append((float(score[i]), d[i:i + window]))
    found.sort(key=lambda x: x[0])
    return [seg for _, seg in found[:count]]


def rotation_to(vector: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A rotation matrix turning the direction of ``vector`` onto ``target``."""
    rot, _ = Rotation.align_vectors(np.atleast_2d(target), np.atleast_2d(vector))
    return rot.as_matrix()


AXIS = {"+x": (0, 1.0), "-x": (0, -1.0), "+y": (1, 1.0), "-y": (1, -1.0), "+z": (2, 1.0), "-z": (2, -1.0)}


def real_noise_in_pose(windows: list[np.ndarray], pose: str, n: int, start: int) -> np.ndarray:
    """``n`` samples of a perfectly calibrated sensor at rest in ``pose``: exactly ±1 g on the pose
    axis, zero rotation rate, plus the real residual noise of the still windows (each window minus its
    own mean, rotated by the rotation that turns the window's real gravity vector onto the pose axis).
    """
    axis, sign = AXIS[pose]
    target = np.zeros(3)
    target[axis] = sign
    out = []
    k = start
    while sum(len(o) for o in out) < n:
        w = windows[k % len(windows)]
        k += 1
        rot = rotation_to(w[:, :3].mean(axis=0), target)
        resid = w - w.mean(axis=0)
        seg = np.empty_like(w)
        seg[:, :3] = target + resid[:, :3] @ rot.T
        seg[:, 3:] = resid[:, 3:] @ rot.T
        out.append(seg)
    return np.concatenate(out)[:n]


@dataclass
class SixPoseRecording:
    """A continuous recording: a long still period, then the six poses, with real motion between."""

    data: np.ndarray  # [n, 6] as the distorted sensor reports it
    rate: float
    accel_offset: np.ndarray
    accel_scale: np.ndarray
    gyro_bias: np.ndarray
    pose_spans: dict[str, tuple[int, int]] = field(default_factory=dict)


def six_pose_recording(
    utd_dir: Path,
    accel_offset=(0.05, -0.04, 0.06),
    accel_scale=(1.03, 0.97, 1.02),
    gyro_bias=(4.0, -3.0, 5.0),
    still_s: float = 8.0,
    pose_s: float = 3.0,
) -> SixPoseRecording:
    """Build the six-pose calibration recording (see :func:`real_noise_in_pose`) at 50 Hz.

    Order: +z still for ``still_s`` (device flat on a table), then +x, -x, +y, -y, -z for ``pose_s``
    each; between consecutive stills a real 1.2 s stretch of arm motion (UTD-MHAD action 1, raw).
    The sensor is then distorted by the known model ``a_meas = diag(scale) a + offset``,
    ``g_meas = g + bias``.
    """
    rate = IMU_RATE_UTD
    windows = real_still_windows(utd_dir)
    motion = load_inertial(utd_dir, "a1_s1_t1")
    motion_len = int(1.2 * rate)
    parts, spans, pos, k = [], {}, 0, 0
    for i, (pose, dur) in enumerate([("+z", still_s)] + [(p, pose_s) for p in ("+x", "-x", "+y", "-y", "-z")]):
        if i:
            start = 20 + (i * 13) % max(len(motion) - motion_len - 20, 1)
            parts.append(motion[start:start + motion_len])
            pos += motion_len
        n = int(dur * rate)
        parts.append(real_noise_in_pose(windows, pose, n, k))
        k += n // len(windows[0]) + 1
        spans[pose] = (pos, pos + n)
        pos += n
    true = np.concatenate(parts)
    offset, scale, bias = (np.asarray(v, dtype=np.float64) for v in (accel_offset, accel_scale, gyro_bias))
    measured = np.empty_like(true)
    measured[:, :3] = true[:, :3] * scale + offset
    measured[:, 3:] = true[:, 3:] + bias
    return SixPoseRecording(measured, rate, offset, scale, bias, spans)


def test_six_pose_recording_holds_the_known_distortion(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    a, b = rec.pose_spans["+x"]
    mean = rec.data[a:b].mean(axis=0)
    # +x up: x reads offset + scale·1 g; the residual noise is zero-mean per window.
    assert abs(mean[0] - (0.05 + 1.03)) < 0.003
    assert abs(mean[1] - (-0.04)) < 0.003
    assert np.allclose(mean[3:], rec.gyro_bias, atol=0.3)
    still = rec.data[: int(8 * rec.rate)]
    assert 0.05 < still[:, 3].std() < 3.0  # real noise, neither zero nor motion
