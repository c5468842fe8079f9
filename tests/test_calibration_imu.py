"""Acceptance (a): six-pose accelerometer and still-period gyro calibration on real IMU noise."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.imu import (
    POSES,
    calibrate_from_pose_captures,
    calibrate_imu_recording,
    check_pose_capture,
    find_still_period,
)
from calibration.profile import CalibrationProfile, apply_imu
from test_calibration_signals import six_pose_recording


def _rel(est, true):
    return np.abs(np.asarray(est) - np.asarray(true)) / np.abs(np.asarray(true))


def test_six_pose_recording_recovers_offset_scale_and_bias_within_2_percent(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    result = calibrate_imu_recording(rec.data, rec.rate)
    cal = result.calibration
    print("offset", cal.accel_offset, "scale", cal.accel_scale, "bias", cal.gyro_bias, "noise", cal.gyro_noise_std)
    print("offset rel err", _rel(cal.accel_offset, rec.accel_offset), "scale", _rel(cal.accel_scale, rec.accel_scale),
          "bias", _rel(cal.gyro_bias, rec.gyro_bias))
    assert set(result.poses) == set(POSES)
    # every detected pose segment lies inside the span where the device really was in that pose
    for pose, seg in result.poses.items():
        a, b = rec.pose_spans[pose]
        assert a <= seg.start < seg.stop <= b, (pose, seg.start, seg.stop, a, b)
        assert seg.length >= 0.6 * (b - a)
    assert np.all(_rel(cal.accel_offset, rec.accel_offset) < 0.02)
    assert np.all(_rel(cal.accel_scale, rec.accel_scale) < 0.02)
    assert np.all(_rel(cal.gyro_bias, rec.gyro_bias) < 0.02)
    # the longest still period is the 8 s table rest at the start
    assert result.still.pose == "+z" and result.still.length > 6 * rec.rate
    assert np.all((cal.gyro_noise_std > 0.05) & (cal.gyro_noise_std < 3.0))

    # applying the calibration: every pose reads 1 g on its axis and no rotation
    prof = CalibrationProfile(imu={"imu": cal})
    fixed = apply_imu(prof, rec.data)
    for pose, (a, b) in rec.pose_spans.items():
        mean = fixed[a:b].mean(axis=0)
        axis = "xyz".index(pose[1])
        assert abs(mean[axis] - (1.0 if pose[0] == "+" else -1.0)) < 0.005
        assert np.all(np.abs(np.delete(mean[:3], axis)) < 0.005)
        assert np.all(np.abs(mean[3:]) < 0.3)


def test_full_matrix_recovers_cross_axis_terms(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir, accel_scale=(1.0, 1.0, 1.0), accel_offset=(0.0, 0.0, 0.0))
    true = np.array([[1.02, 0.015, -0.01], [0.0, 0.98, 0.02], [0.012, 0.0, 1.01]])
    data = rec.data.copy()
    data[:, :3] = data[:, :3] @ true.T + np.array([0.02, -0.03, 0.01])
    cal = calibrate_imu_recording(data, rec.rate, full_matrix=True).calibration
    assert np.allclose(cal.accel_matrix, true, atol=0.003)
    assert np.allclose(cal.accel_offset, [0.02, -0.03, 0.01], atol=0.002)


def test_guided_captures_give_the_same_calibration(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    captures = {pose: rec.data[a:b] for pose, (a, b) in rec.pose_spans.items()}
    cal = calibrate_from_pose_captures(captures, rec.rate)
    assert np.all(_rel(cal.accel_offset, rec.accel_offset) < 0.02)
    assert np.all(_rel(cal.accel_scale, rec.accel_scale) < 0.02)
    assert np.all(_rel(cal.gyro_bias, rec.gyro_bias) < 0.02)


def test_wrong_pose_or_motion_in_a_capture_is_rejected(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    a, b = rec.pose_spans["+x"]
    with pytest.raises(CalibrationError, match=r"capture -y: .*pose \+x.*-Y pointing up"):
        check_pose_capture(rec.data[a:b], "-y", rec.rate)
    moving = rec.data[rec.pose_spans["+z"][1]:rec.pose_spans["+x"][0]]
    with pytest.raises(CalibrationError, match="moved"):
        check_pose_capture(moving, "+x", rec.rate)


def test_missing_pose_and_no_still_period_are_clear_errors(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    cut = rec.pose_spans["-y"][0]
    with pytest.raises(CalibrationError, match=r"pose\(s\) -y, -z not found"):
        calibrate_imu_recording(rec.data[:cut], rec.rate)
    a, b = rec.pose_spans["+z"][1], rec.pose_spans["+x"][0]
    with pytest.raises(CalibrationError, match="no still period"):
        find_still_period(rec.data[a:b], rec.rate)
    with pytest.raises(CalibrationError, match=r"\[n, 6\]"):
        calibrate_imu_recording(rec.data[:, :3], rec.rate)


def test_accelerometer_only_device_is_calibrated_with_zero_gyro_entries(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    data = rec.data.copy()
    data[:, 3:] = np.nan  # how devices.imu_serial reports a 3-axis IMU
    cal = calibrate_imu_recording(data, rec.rate).calibration
    assert np.all(_rel(cal.accel_offset, rec.accel_offset) < 0.02)
    assert np.all(_rel(cal.accel_scale, rec.accel_scale) < 0.02)
    assert np.array_equal(cal.gyro_bias, np.zeros(3))
    bad = rec.data.copy()
    bad[100, 1] = np.nan
    with pytest.raises(CalibrationError, match="non-finite IMU value at sample 100"):
        calibrate_imu_recording(bad, rec.rate)
