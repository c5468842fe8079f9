"""mmg-live headless capture: record a replayed session, survive a missing camera, argument errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.base import Chunk
from emulation_devices import pulse_server, socat_pair  # noqa: F401  (fixtures)
from mmg_live.cli import main
from devices.session import SessionReader, SessionWriter

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def source_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s: 10 fps colour video, 8 kHz audio in 400-sample blocks, 50 Hz IMU."""
    folder = tmp_path_factory.mktemp("src") / "session"
    rng = np.random.default_rng(11)
    t0 = 500.0
    with SessionWriter(folder, {"audio": {"rate": 8000}, "video": {"fps": 10}}) as w:
        for i in range(30):
            w.write(Chunk("video", np.array([t0 + i / 10]), rng.integers(0, 256, (1, 16, 20, 3), dtype=np.uint8)))
        ta = t0 + np.arange(24000) / 8000
        audio = rng.uniform(-0.8, 0.8, (24000, 1)).astype(np.float32)
        for i in range(0, 24000, 400):
            w.write(Chunk("audio", ta[i : i + 400], audio[i : i + 400]))
        w.write(Chunk("imu", t0 + np.arange(150) / 50, rng.normal(size=(150, 6)).astype(np.float32)))
    return folder


def test_headless_record_of_replay(source_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from calibration.profile import CalibrationProfile, ImuCalibration, TimeOffset, apply_imu

    calib = tmp_path / "calib.json"
    profile = CalibrationProfile(imu={"imu": ImuCalibration(gyro_bias=np.array([1.0, -2.0, 3.0]),
                                                            accel_offset=np.array([0.1, 0.0, -0.1]))},
                                 time_offsets={"video": TimeOffset("video", 0.02)})
    profile.save(calib)
    out_dir = tmp_path / "rec"
    rc = main(["--headless", "--replay", str(source_session), "--record", str(out_dir), "--seconds", "2",
               "--calibration", str(calib)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""
    assert "capturing audio (audio), imu (imu), video (video)" in out or "capturing" in out
    assert f"session written to {out_dir.resolve()}" in out
    for name in ("video", "audio", "imu"):
        assert any(line.split()[:2] == [name, name] for line in out.splitlines()), out

    ref = SessionReader(source_session)
    rec = SessionReader(out_dir)
    assert rec.closed and rec.meta["calibration"]["file"] == str(calib.resolve())
    assert rec.meta["calibration"]["imu"]["imu"]["gyro_bias_dps"] == [1.0, -2.0, 3.0]
    assert rec.meta["devices"]["audio"]["rate"] == 8000
    rep = rec.report
    assert not any(r["truncated"] for r in rep.values()), rep
    # 2 s of a 3 s recording at 1x: about 2 s of each stream (start-up costs a little)
    expected = {"video": 10, "audio": 8000, "imu": 50}
    for name, rate in expected.items():
        n = rep[name]["samples"]
        assert 1.6 * rate <= n <= 2.1 * rate, (name, n)
        a, b = ref.read(name), rec.read(name)
        if name == "audio":
            np.testing.assert_allclose(b.data, a.data[:n], atol=1 / 32768 + 1e-7)  # re-quantised once
        elif name == "imu":  # the profile's bias/offset were applied before recording
            np.testing.assert_allclose(b.data, apply_imu(profile, a.data[:n], "imu"), atol=1e-6)
            assert not np.allclose(b.data, a.data[:n])
        else:
            np.testing.assert_array_equal(b.data, a.data[:n])
        np.testing.assert_allclose(np.diff(b.timestamps), np.diff(a.timestamps[:n]), atol=1e-6)
        assert rec.counters[name]["samples"] >= n and rec.counters[name]["dropped"] == 0


def test_missing_camera_is_one_line_and_others_keep_recording(
    source_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_dir = tmp_path / "rec"
    rc = main(["--headless", "--camera", "7", "--replay", str(source_session), "--speed", "4",
               "--record", str(out_dir), "--seconds", "1"])
    out, err = capsys.readouterr()
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mmg-live: ") and "camera" in lines[0] and "7" in lines[0], err
    assert "Traceback" not in err
    rep = SessionReader(out_dir).report
    assert set(rep) == {"video", "audio", "imu"}
    assert rep["imu"]["samples"] >= 150 * 0.8  # 3 s at 4x fits in 1 s; most of it recorded


def test_no_source_opens_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["--headless", "--camera", "7", "--record", str(tmp_path / "rec"), "--seconds", "1"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert err.splitlines()[-1] == "mmg-live: no source could be opened; nothing recorded"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--headless", "--speed", "abc", "--replay", "x"], "argument --speed: invalid float value: 'abc'"),
        (["--headless", "--imu", "/dev/ttyX@fast"],
         "--imu '/dev/ttyX@fast': baud rate 'fast' is not a positive integer"),
        (["--headless", "--seconds", "2"], "no source"),
        (["--headless", "--replay", "x", "--calibration", "/nonexistent/c.json"],
         "/nonexistent/c.json: calibration profile not found"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--headless", "--replay", "x", "--threads", "0"], "--threads must be >= 1, got 0"),
    ],
)
def test_argument_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and err.splitlines()[-1].startswith("mmg-live: error: ")


def test_headless_prediction_outputs_without_checkpoint_use_the_default_model(
    source_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--jsonl alone makes predictions with the shipped model (as the GUI does); stdout holds only them."""
    jsonl = tmp_path / "preds.jsonl"
    rc = main(["--headless", "--replay", str(source_session), "--loop", "--seconds", "4", "--device", "cpu",
               "--jsonl", str(jsonl)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "mmg-live: capturing" in err and "needs --checkpoint" not in err  # status lines go to stderr
    assert re.search(r"^mmg-live: \d+ predictions, ", err, re.MULTILINE), err  # the engine ran
    predictions = [json.loads(line) for line in out.splitlines()]
    assert [json.loads(line)["t"] for line in jsonl.read_text().splitlines()] == [p["t"] for p in predictions]


def test_bad_replay_folder_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["--headless", "--replay", str(tmp_path), "--seconds", "0.5"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.splitlines()[0] == (
        f"mmg-live: replay {tmp_path}: SessionReader: {tmp_path}/session.json not found (not a session folder)")


def test_demo_refuses_other_sources_and_console_entry(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mmg_live.cli import main; sys.exit(main())",
         "--demo", "--imu", "/dev/ttyACM0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "mmg-live: error: --demo brings its own source; drop --camera/--mic/--imu/--remote/--replay")


def test_headless_record_of_real_device_paths(
    source_session: Path, tmp_path: Path, capsys: pytest.CaptureFixture, pulse_server, socat_pair, fsdd_dir  # noqa: F811
) -> None:
    """--mic (PulseAudio null sink playing a real FSDD recording) + --imu (socat pty) + --replay."""
    import threading

    import soundfile as sf
    from scipy.signal import correlate, resample_poly

    from emulation_devices import LineWriter

    def imu_line(seq: int) -> tuple[bytes, bool]:
        if seq % 25 == 13:
            return b"#garbage!!\n", True
        v = seq * 0.001
        return f"{v:.3f},{-v:.3f},1.000,{seq % 7},0,{-seq % 5}\n".encode(), False

    wav = fsdd_dir / "recordings" / "7_jackson_0.wav"
    played, rate_in = sf.read(wav, dtype="float32")
    lines = LineWriter(socat_pair.device, 100.0, imu_line, duration=4.0)
    lines.start()
    player = threading.Timer(0.8, pulse_server.play, args=(wav,))
    player.start()
    out_dir = tmp_path / "rec"
    try:
        rc = main(["--headless", "--mic", "--imu", f"{socat_pair.port}@115200", "--replay", str(source_session),
                   "--record", str(out_dir), "--seconds", "2.5"])
    finally:
        player.join(10)
        lines.stop_event.set()
        lines.join(5)
    out, err = capsys.readouterr()
    assert rc == 0, err
    rec = SessionReader(out_dir)
    streams = rec.streams
    assert {"mic", "imu", "imu_2", "audio", "video"} <= set(streams), streams  # replay's imu renamed
    assert streams["mic"]["files"]["wav"] == "audio.wav" and streams["mic"]["rate"] == 16000

    imu = rec.read("imu")
    assert 150 <= len(imu.timestamps) <= 260, len(imu.timestamps)
    seq = np.round(imu.data[:, 0] / 0.001).astype(int)
    assert np.all(np.diff(seq) >= 1) and np.all(seq % 25 != 13)
    np.testing.assert_allclose(imu.data[:, 3], seq % 7)
    assert rec.counters["imu"]["bad_lines"] >= 4  # one garbage line in 25, counted, recorded in session.json
    assert np.all(np.diff(imu.timestamps) > 0)

    mic = rec.read("mic")
    assert 1.8 * 16000 <= len(mic.timestamps) <= 2.6 * 16000
    ref = resample_poly(played, 16000, int(rate_in)).astype(np.float64)
    got = mic.data[:, 0].astype(np.float64)
    xc = correlate(got, ref, mode="valid")
    k = int(np.argmax(np.abs(xc)))
    seg = got[k : k + len(ref)]
    corr = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12))
    assert corr > 0.8, corr
    # the playback started ~0.8 s after launch: the recorded onset's timestamp says so
    onset = mic.timestamps[k] - mic.timestamps[0]
    assert 0.3 < onset < 1.8, onset


def test_headless_record_of_remote_stream(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--remote: every stream the publisher announces is subscribed and recorded on the sender's clock."""
    from devices.replay import ReplaySource
    from devices.zmq_stream import ZmqPublisher

    data = np.arange(60, dtype=np.float32).reshape(10, 6)
    wrist = ReplaySource("wrist", "imu", 7.0 + np.arange(10) / 20, data, loop=True, speed=2.0)
    pub = ZmqPublisher("tcp://127.0.0.1:*", beacon_interval=0.1)
    pub.add_source(wrist)
    wrist.start()
    try:
        rc = main(["--headless", "--remote", pub.endpoint, "--record", str(tmp_path / "rec"), "--seconds", "1.5"])
    finally:
        wrist.stop()
        pub.close()
    out, err = capsys.readouterr()
    assert rc == 0, err
    got = SessionReader(tmp_path / "rec").read("wrist")
    assert len(got.timestamps) >= 15
    assert np.all(np.diff(got.timestamps) > 0)
    first = int(round(got.data[0, 0] / 6))
    np.testing.assert_array_equal(got.data, data[(first + np.arange(len(got.data))) % 10])
    assert "wrist" in out
