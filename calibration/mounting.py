"""Sensor-to-forearm mounting: the rotation that turns a wrist IMU's readings into the frame of
the mounting the model learned (UTD-MHAD's right-wrist sensor), from two still arm poses.

A board strapped to the wrist in another orientation reads the same motion in turned axes:
``reading = M @ canonical`` for accel and gyro alike. Two still poses whose gravity directions
differ pin ``M`` down (the TRIAD method): the arm **hanging** relaxed at the side, then held
straight **forward**, level, with the back of the hand up. :func:`mounting_rotation` returns
``C = M⁻¹``, which :func:`calibration.profile.apply_imu` applies after the intrinsics.

Nothing here prompts or prints: the CLI's guided mode and the GUI call these functions.
"""

from __future__ import annotations

import numpy as np

from calibration.errors import CalibrationError

MOUNTING_POSES = ("hang", "forward")
"""The two still poses, in the order the guided step asks for them."""

MOUNTING_HINTS = {
    "hang": "let the arm with the IMU hang relaxed at your side",
    "forward": "hold that arm straight out in front of you, level, back of the hand up",
}

#: Gravity (what a still accelerometer reads: "up", unit length) in the canonical sensor frame
#: with the arm hanging: the mean of the still starts of the 41 UTD-MHAD wrist-action trials
#: whose first 15 samples are still (spread 7.3° about it).
CANONICAL_HANG = np.array([-0.9769, -0.1903, 0.0968])

#: Gravity in the canonical frame with the arm held forward, back of the hand up: the board's -z.
#: UTD-MHAD holds no such still pose; its quasi-static forearm-level moments point the same way
#: (push (0.07, 0.22, -0.97), catch (0.00, -0.40, -0.92)). Only its part across
#: :data:`CANONICAL_HANG` is used: it fixes the turn about the forearm.
CANONICAL_FORWARD = np.array([0.0, 0.0, -1.0])

#: Least angle between the two poses' gravity directions for a usable estimate.
MIN_POSE_ANGLE_DEG = 45.0


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise CalibrationError(f"{what}: expected a finite 3-vector of accelerometer means, got {v.tolist()}")
    n = float(np.linalg.norm(v))
    if n < 0.5:
        raise CalibrationError(f"{what}: the accelerometer read {n:.2f} g while still (expected about 1 g); "
                               "is it calibrated and in g?")
    return v / n


def _triad(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """An orthonormal frame (columns) from two non-parallel unit vectors, the first kept exactly."""
    t1 = primary
    t2 = np.cross(primary, secondary)
    t2 /= np.linalg.norm(t2)
    return np.column_stack([t1, t2, np.cross(t1, t2)])


def pose_angle_deg(hang_accel: np.ndarray, forward_accel: np.ndarray) -> float:
    """Angle between the two poses' gravity directions, degrees."""
    a, b = _unit(hang_accel, "hang"), _unit(forward_accel, "forward")
    return float(np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0))))


def mounting_rotation(hang_accel: np.ndarray, forward_accel: np.ndarray) -> np.ndarray:
    """The 3×3 rotation ``C`` with ``canonical = C @ reading``, from the mean accelerometer readings
    (g) of the still hanging and forward poses.

    The hanging direction is matched exactly (it is the better defined pose); the forward one fixes
    the turn about it. Raises :class:`CalibrationError` when the two poses are less than
    :data:`MIN_POSE_ANGLE_DEG` apart (the arm was not raised, or raised sideways along the same line).
    """
    angle = pose_angle_deg(hang_accel, forward_accel)
    if angle < MIN_POSE_ANGLE_DEG:
        raise CalibrationError(
            f"the two poses are only {angle:.0f}° apart (need ≥ {MIN_POSE_ANGLE_DEG:.0f}°): let the arm hang "
            "straight down for the first and hold it level in front of you for the second")
    measured = _triad(_unit(hang_accel, "hang"), _unit(forward_accel, "forward"))
    canonical = _triad(CANONICAL_HANG / np.linalg.norm(CANONICAL_HANG), CANONICAL_FORWARD)
    return canonical @ measured.T


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """How far ``rotation`` turns, degrees (0 for the identity)."""
    r = np.asarray(rotation, dtype=np.float64)
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def check_mounting_capture(samples: np.ndarray, pose: str, max_accel_std_g: float = 0.05) -> np.ndarray:
    """The mean accelerometer reading of one pose's capture ``[n, ≥3]``; raises
    :class:`CalibrationError` with what to do when the arm moved or the capture is empty."""
    if pose not in MOUNTING_POSES:
        raise ValueError(f"unknown mounting pose {pose!r}; expected one of {MOUNTING_POSES}")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 3 or len(x) < 5:
        raise CalibrationError(f"{pose}: too few IMU samples ({len(x)}) to measure the pose")
    acc = x[:, :3]
    if not np.all(np.isfinite(acc)):
        raise CalibrationError(f"{pose}: non-finite accelerometer values in the capture")
    std = float(acc.std(axis=0).max())
    if std > max_accel_std_g:
        raise CalibrationError(f"{pose}: the arm moved (accelerometer std {std:.3f} g > {max_accel_std_g:g} g); "
                               f"{MOUNTING_HINTS[pose]} and keep it still")
    mean = acc.mean(axis=0)
    _unit(mean, pose)
    return mean
