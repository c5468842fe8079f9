"""IMU mounting calibration (issue 29): the rotation from two still arm poses, stored in the
profile and applied with the intrinsics; the guided flow over a serial pty; and what it restores
on the held-out UTD-MHAD subjects with the IMU turned on the wrist."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from calibration.cli import main
from calibration.errors import CalibrationError
from calibration.mounting import (CANONICAL_FORWARD, CANONICAL_HANG, MOUNTING_HINTS, check_mounting_capture,
                                  mounting_rotation, rotation_angle_deg)
from calibration.profile import CalibrationProfile, ImuCalibration, apply_imu
from emulation_devices import LineWriter, socat_pair  # noqa: F401  (socat_pair is a fixture)
from test_calibration_signals import load_inertial
from trainer.mounting import MOUNTINGS, axis_rotation, turned


def canonical_poses(utd_dir: Path, n: int, seed: int, hang: np.ndarray = CANONICAL_HANG) -> dict[str, np.ndarray]:
    """``n`` samples per arm pose as the canonical wrist sensor reads them: 1 g along ``hang``
    (default: :data:`CANONICAL_HANG`) and along :data:`CANONICAL_FORWARD`, each with the real noise
    of the still start of a UTD-MHAD trial (the data set holds no still forward pose)."""
    rng = np.random.default_rng(seed)
    raw = load_inertial(utd_dir, "a5_s1_t1")[:12]  # hanging still, as its first samples
    noise = raw - raw.mean(axis=0)
    out = {}
    for pose, gravity in (("hang", hang), ("forward", CANONICAL_FORWARD)):
        x = noise[rng.integers(0, len(raw), n)].copy()
        x[:, :3] += gravity / np.linalg.norm(gravity)
        out[pose] = x
    return out


@pytest.mark.parametrize("name", sorted(MOUNTINGS))
def test_two_arm_poses_give_the_inverse_of_the_mounting(utd_mhad_dir, name):
    m = MOUNTINGS[name]
    poses = {p: turned(x, m) for p, x in canonical_poses(utd_mhad_dir, 150, 1).items()}
    c = mounting_rotation(check_mounting_capture(poses["hang"], "hang"),
                          check_mounting_capture(poses["forward"], "forward"))
    error = rotation_angle_deg(c @ m)
    print(f"\n{name}: estimated mounting off by {error:.2f}°")
    assert np.allclose(c @ c.T, np.eye(3), atol=1e-9) and np.linalg.det(c) > 0
    assert error < 1.0


def test_canonical_hang_is_what_the_recordings_read(utd_mhad_dir):
    """The reference is the data's: the mean gravity direction of the still starts (first 15
    samples, accel std < 0.03 g) of the wrist-action trials (actions 1-21)."""
    directions = []
    for path in sorted((utd_mhad_dir / "Inertial").glob("a*_s*_t*_inertial.mat")):
        if int(path.name.split("_")[0][1:]) > 21:
            continue
        x = load_inertial(utd_mhad_dir, path.name[: -len("_inertial.mat")])[:15, :3]
        if x.std(axis=0).max() < 0.03:
            directions.append(x.mean(axis=0) / np.linalg.norm(x.mean(axis=0)))
    mean = np.mean(directions, axis=0)
    angle = np.degrees(np.arccos(mean @ CANONICAL_HANG / np.linalg.norm(mean) / np.linalg.norm(CANONICAL_HANG)))
    print(f"\n{len(directions)} still starts; their mean is {angle:.2f}° from CANONICAL_HANG")
    assert len(directions) >= 30 and angle < 1.0


def test_poses_that_moved_or_are_too_close_are_explained(utd_mhad_dir):
    poses = canonical_poses(utd_mhad_dir, 150, 2)
    moving = poses["hang"].copy()
    moving[::2, 0] += 0.3
    with pytest.raises(CalibrationError, match="the arm moved"):
        check_mounting_capture(moving, "hang")
    hang = poses["hang"][:, :3].mean(axis=0)
    with pytest.raises(CalibrationError, match="apart"):
        mounting_rotation(hang, hang @ axis_rotation("y", 20).T)
    with pytest.raises(CalibrationError, match="expected about 1 g"):
        mounting_rotation(hang * 0.1, CANONICAL_FORWARD)


def test_profile_keeps_and_applies_the_mounting(tmp_path):
    m = MOUNTINGS["45z30x"]
    cal = ImuCalibration(accel_offset=np.array([0.05, -0.02, 0.01]), gyro_bias=np.array([1.0, 2.0, -1.0]),
                         mounting=m.T)
    path = CalibrationProfile(imu={"imu": cal}).save(tmp_path / "p.json")
    loaded = CalibrationProfile.load(path)
    assert np.allclose(loaded.imu["imu"].mounting, m.T)
    assert "mounting: turned" in loaded.summary()
    canonical = np.array([[0.3, -0.9, 0.1, 10.0, -20.0, 5.0]])
    raw = turned(canonical, m)
    raw[:, :3] += cal.accel_offset
    raw[:, 3:] += cal.gyro_bias
    assert np.allclose(apply_imu(loaded, raw, "imu"), canonical, atol=1e-9)
    doc = loaded.to_dict()
    doc["imu"]["imu"]["mounting"] = [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    with pytest.raises(CalibrationError, match="not a rotation"):
        CalibrationProfile.from_dict(doc)


def test_guided_mounting_over_a_serial_pty_keeps_the_intrinsics(utd_mhad_dir, socat_pair, tmp_path,  # noqa: F811
                                                                monkeypatch, capsys):
    """`mmg-calibrate mounting --imu PORT --update P`: a first forward pose too close to hanging
    (arm raised only 20°) is explained and asked again; the profile's intrinsics are applied to
    the captures and kept."""
    m = MOUNTINGS["90x"]
    offset = np.array([0.04, -0.03, 0.02])
    poses = {p: turned(x, m) for p, x in canonical_poses(utd_mhad_dir, 400, 3).items()}
    hang_mean = poses["hang"][:, :3].mean(axis=0)
    half_raised = poses["hang"].copy()
    half_raised[:, :3] = poses["hang"][:, :3] - hang_mean + hang_mean @ (m @ axis_rotation("y", 20) @ m.T).T
    poses["too close"] = half_raised
    for x in poses.values():
        x[:, :3] += offset  # what the uncorrected accelerometer reads
    current = {"pose": "hang"}
    lock = threading.Lock()

    def make_line(seq: int) -> tuple[bytes, bool]:
        with lock:
            seg = poses[current["pose"]]
        return (",".join(f"{v:.5f}" for v in seg[seq % len(seg)]) + "\n").encode(), False

    profile = tmp_path / "profile.json"
    CalibrationProfile(imu={"imu": ImuCalibration(accel_offset=offset)}).save(profile)
    writer = LineWriter(socat_pair.device, rate=100.0, make_line=make_line, duration=60.0)
    writer.start()
    prompts: list[str] = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        pose = "hang" if MOUNTING_HINTS["hang"] in prompt else ("too close" if len(prompts) == 2 else "forward")
        with lock:
            current["pose"] = pose  # the user moves the arm, then presses Enter
        return ""

    monkeypatch.setattr("builtins.input", fake_input)
    try:
        code = main(["mounting", "--imu", f"{socat_pair.port}@115200", "--capture-s", "1.0", "--update",
                     str(profile)])
    finally:
        writer.stop_event.set()
        writer.join(timeout=5)
    out = capsys.readouterr().out
    print(out)
    assert code == 0 and len(prompts) == 3, prompts
    assert "apart" in out  # the too-close forward pose was explained
    cal = CalibrationProfile.load(profile).imu["imu"]
    assert np.allclose(cal.accel_offset, offset)
    assert rotation_angle_deg(cal.mounting @ m) < 2.0, rotation_angle_deg(cal.mounting @ m)
