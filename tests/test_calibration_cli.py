"""mmg-calibrate: help text, sync and imu from recorded session folders, guided mode over a serial pty."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from calibration.cli import main
from calibration.guided import POSE_HINTS
from calibration.profile import CalibrationProfile
from devices.base import Chunk
from emulation_devices import LineWriter, socat_pair  # noqa: F401  (socat_pair is a fixture)
from devices.session import SessionWriter
from test_calibration_signals import six_pose_recording, tap_recording


def _write_session(folder: Path, streams, devices) -> Path:
    """Record streams ``[(name, modality, ts, data, block)]`` through the real SessionWriter."""
    with SessionWriter(folder, devices=devices) as writer:
        for name, modality, ts, data, block in streams:
            for a in range(0, len(ts), block):
                writer.write(Chunk(modality, ts[a:a + block], data[a:a + block], name))
    return folder


@pytest.fixture(scope="module")
def tap_session(utd_mhad_dir, fsdd_dir, tmp_path_factory):
    rec = tap_recording(utd_mhad_dir, fsdd_dir)
    folder = _write_session(tmp_path_factory.mktemp("s") / "taps", [
        ("imu", "imu", rec.imu_t, rec.imu, 10),
        ("microphone", "audio", rec.audio_t, rec.audio[:, None], 512),
        ("camera", "video", rec.video_t, rec.video, 1),
    ], {"microphone": {"rate": 16000}, "camera": {"fps": 30}})
    return rec, folder


@pytest.fixture(scope="module")
def pose_session(utd_mhad_dir, tmp_path_factory):
    rec = six_pose_recording(utd_mhad_dir)
    ts = 500.0 + np.arange(len(rec.data)) / rec.rate
    streams = [("imu", "imu", ts, rec.data.astype(np.float32), 5)]
    folder = _write_session(tmp_path_factory.mktemp("s") / "poses", streams, {})
    return rec, folder


def _command() -> list[str]:
    """The installed ``mmg-calibrate`` console script, else the module (a checkout not yet installed)."""
    script = Path(sys.executable).parent / "mmg-calibrate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "calibration.cli"]


def test_help_explains_the_tap_procedure():
    out = subprocess.run([*_command(), "sync", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "tap it sharply on a table 5 times, about 1 s apart" in out
    assert "in view of the camera" in out and "--update PROFILE" in out
    top = subprocess.run([*_command(), "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "six still poses" in top and "tap it sharply" in top


def test_sync_from_a_recorded_session_then_update_keeps_the_imu_entry(tap_session, pose_session, tmp_path, capsys):
    rec, folder = tap_session
    out = tmp_path / "profile.json"
    assert main(["imu", "--session", str(pose_session[1]), "--out", str(out)]) == 0
    assert main(["sync", "--session", str(folder), "--update", str(out)]) == 0
    prof = CalibrationProfile.load(out)
    print(capsys.readouterr().out)
    assert set(prof.imu) == {"imu"}
    assert abs(prof.time_offsets["microphone"].offset_s - rec.mic_offset) < 0.002
    assert abs(prof.time_offsets["camera"].offset_s - rec.camera_offset) < 0.5 / 30
    assert prof.time_offsets["imu"].offset_s == 0.0
    # --out never overwrites what is there
    before = out.read_bytes()
    assert main(["sync", "--session", str(folder), "--out", str(out)]) == 2
    assert "exists; use --update" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    shown_mic = re.search(r"microphone \(audio\): ([+-]\d+\.\d+) ms", shown)
    # the shown offset, to the 1 ms the printed "-22" allowed before, now centred on the truth
    assert shown_mic and abs(float(shown_mic.group(1)) - rec.mic_offset * 1e3) < 1.0 and "accel scale" in shown


def test_imu_from_a_recorded_session(pose_session, tmp_path):
    rec, folder = pose_session
    out = tmp_path / "imu.json"
    assert main(["imu", "--session", str(folder), "--out", str(out)]) == 0
    cal = CalibrationProfile.load(out).imu["imu"]
    assert np.allclose(cal.accel_offset, rec.accel_offset, rtol=0.02)
    assert np.allclose(cal.accel_scale, rec.accel_scale, rtol=0.02)
    assert np.allclose(cal.gyro_bias, rec.gyro_bias, rtol=0.02)


def test_session_without_taps_and_corrupt_profile_are_one_line_errors(utd_mhad_dir, fsdd_dir, tmp_path, capsys):
    rec = tap_recording(utd_mhad_dir, fsdd_dir, taps=(), with_video=False)
    folder = _write_session(tmp_path / "quiet", [("imu", "imu", rec.imu_t, rec.imu, 10),
                                                 ("microphone", "audio", rec.audio_t, rec.audio[:, None], 512)],
                            {"microphone": {"rate": 16000}})
    assert main(["sync", "--session", str(folder), "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmg-calibrate: error: no tap events found in imu") and err.count("\n") == 1
    assert not (tmp_path / "p.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{]")
    assert main(["show", str(bad)]) == 2
    assert "corrupt calibration profile" in capsys.readouterr().err
    assert main(["sync", "--session", str(tmp_path / "nope"), "--out", str(tmp_path / "q.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_guided_imu_calibration_over_a_serial_pty(utd_mhad_dir, socat_pair, tmp_path, monkeypatch, capsys):  # noqa: F811
    rec = six_pose_recording(utd_mhad_dir)
    segments = {pose: rec.data[a:b] for pose, (a, b) in rec.pose_spans.items()}
    current = {"pose": "+z"}
    lock = threading.Lock()

    def make_line(seq: int) -> tuple[bytes, bool]:
        with lock:
            seg = segments[current["pose"]]
        row = seg[seq % len(seg)]
        return (",".join(f"{v:.5f}" for v in row) + "\n").encode(), False

    writer = LineWriter(socat_pair.device, rate=100.0, make_line=make_line, duration=60.0)
    writer.start()
    hint_to_pose = {hint: pose for pose, hint in POSE_HINTS.items()}
    prompts = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        pose = next(p for h, p in hint_to_pose.items() if h in prompt)
        with lock:
            current["pose"] = pose  # the user turns the device, then presses Enter
        return ""

    monkeypatch.setattr("builtins.input", fake_input)
    out = tmp_path / "guided.json"
    try:
        code = main(["imu", "--imu", f"{socat_pair.port}@115200", "--capture-s", "1.0", "--still-s", "1.5",
                     "--out", str(out)])
    finally:
        writer.stop_event.set()
        writer.join(timeout=5)
    print(capsys.readouterr())
    assert code == 0 and len(prompts) == 6
    assert "Place the device flat on the table" in prompts[0]
    cal = CalibrationProfile.load(out).imu["imu"]
    # a 1 s capture of real noise holds fewer samples: allow 2 % on scale, 5 % on offset and bias
    assert np.allclose(cal.accel_scale, rec.accel_scale, rtol=0.02)
    assert np.allclose(cal.accel_offset, rec.accel_offset, rtol=0.05)
    assert np.allclose(cal.gyro_bias, rec.gyro_bias, rtol=0.05)
