"""SessionWriter / SessionReader: exact round trip, crash (kill -9) recovery, truncated tails."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from devices.base import Chunk, host_now
from devices.session import SESSION_KEYS, SessionError, SessionReader, SessionWriter

REPO = Path(__file__).resolve().parent.parent


def _video_frames(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _write_synthetic(folder: Path, t0: float = 100.0, **kwargs) -> dict:
    """Write 40 colour frames, 40 gray frames, 1 s of stereo audio and 60 imu samples."""
    rng = np.random.default_rng(1)
    color = _video_frames(40, 24, 32, 3, 2)
    gray = _video_frames(40, 24, 32, 1, 3)
    audio = (rng.uniform(-1, 1, (16000, 2)) * 0.9).astype(np.float32)
    imu = rng.normal(0, 3, (60, 6)).astype(np.float32)
    t_color = t0 + np.arange(40) / 30.0
    t_gray = t0 + 0.01 + np.arange(40) / 30.0
    t_audio = t0 + np.arange(16000) / 16000.0
    t_imu = t0 + np.arange(60) / 60.0 + 1e-7 * rng.random(60)  # irregular, must round-trip exactly
    devices = {"video": {"fps": 30, "spec": "0"}, "audio": {"rate": 16000}, "imu": {"port": "/dev/x"}}
    w = SessionWriter(folder, devices, calibration={"imu": {"gyro_bias": [0.1, 0, 0]}}, **kwargs)
    for i in range(0, 40, 4):
        w.write(Chunk("video", t_color[i : i + 4], color[i : i + 4], "video"))
        w.write(Chunk("video", t_gray[i : i + 4], gray[i : i + 4], "cam2"))
    for i in range(0, 16000, 1024):
        w.write(Chunk("audio", t_audio[i : i + 1024], audio[i : i + 1024]))
    for i in range(0, 60, 7):
        w.write(Chunk("imu", t_imu[i : i + 7], imu[i : i + 7]))
    w.add_segment("wave", t0 + 0.2, t0 + 0.7)
    w.update_counters("imu", bad_lines=3, dropped=1)
    w.close()
    return dict(
        color=color, gray=gray, audio=audio, imu=imu, t_color=t_color, t_gray=t_gray, t_audio=t_audio, t_imu=t_imu
    )


def test_round_trip_exact(tmp_path: Path) -> None:
    ref = _write_synthetic(tmp_path / "s")
    names = sorted(os.listdir(tmp_path / "s"))
    for expected in ("session.json", "audio.wav", "audio_timestamps.csv", "imu.csv", "video_timestamps.csv", "video"):
        assert expected in names
    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    assert meta["format_version"] == 1 and meta["closed"] is True
    assert meta["calibration"] == {"imu": {"gyro_bias": [0.1, 0, 0]}}
    assert meta["counters"] == {"imu": {"bad_lines": 3, "dropped": 1}}
    assert meta["segments"] == [{"label": "wave", "t0": 100.2, "t1": 100.7}]
    assert meta["devices"]["audio"]["rate"] == 16000
    assert "T" in meta["wall_clock_start"] and isinstance(meta["host_monotonic_start"], float)
    assert (tmp_path / "s" / "imu.csv").read_text().splitlines()[0] == "host_time,ax,ay,az,gx,gy,gz"

    r = SessionReader(tmp_path / "s")
    assert set(r.streams) == {"video", "cam2", "audio", "imu"}
    v = r.read("video")
    np.testing.assert_array_equal(v.data, ref["color"])  # FFV1 is lossless
    np.testing.assert_array_equal(v.timestamps, ref["t_color"])
    g = r.read("cam2")
    assert g.data.shape == (40, 24, 32, 1)  # grayscale stays grayscale
    np.testing.assert_array_equal(g.data, ref["gray"])
    np.testing.assert_array_equal(g.timestamps, ref["t_gray"])
    a = r.read("audio")
    assert a.rate == 16000 and a.data.shape == (16000, 2)
    assert np.max(np.abs(a.data - ref["audio"])) <= 1 / 32768 + 1e-7  # PCM-16 quantisation only
    np.testing.assert_allclose(a.timestamps, ref["t_audio"], rtol=0, atol=1e-9)
    assert sum(a.blocks) == 16000 and a.blocks[0] == 1024
    i = r.read("imu")
    assert i.data.dtype == np.float32
    np.testing.assert_array_equal(i.data, ref["imu"])
    np.testing.assert_array_equal(i.timestamps, ref["t_imu"])
    rep = r.report
    assert {k: v["samples"] for k, v in rep.items()} == {"video": 40, "cam2": 40, "audio": 16000, "imu": 60}
    assert not any(v["truncated"] for v in rep.values())
    assert r.closed and r.segments[0]["label"] == "wave"
    part = SessionReader(tmp_path / "s").read_range("video", 100.2, 100.5)
    sel = (ref["t_color"] >= 100.2) & (ref["t_color"] <= 100.5)
    np.testing.assert_array_equal(part.timestamps, ref["t_color"][sel])
    np.testing.assert_array_equal(part.data, ref["color"][sel])
    imu_sel = (ref["t_imu"] >= 100.2) & (ref["t_imu"] <= 100.5)
    np.testing.assert_array_equal(r.read_range("imu", 100.2, 100.5).data, ref["imu"][imu_sel])
    chunks = list(r.chunks("audio"))
    assert len(chunks) == 16 and chunks[0].modality == "audio" and chunks[0].stream == "audio"


def test_lossy_codec_keeps_gray_shape(tmp_path: Path) -> None:
    frames = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, None, :, None], (10, 24, 1, 1))
    with SessionWriter(tmp_path / "s", video_codec="mp4v") as w:
        w.write(Chunk("video", np.arange(10) / 30.0, frames))
    v = SessionReader(tmp_path / "s").read("video")
    assert v.data.shape == (10, 24, 32, 1)
    assert np.abs(v.data.astype(int) - frames).mean() < 4


def test_refuses_to_overwrite_and_rejects_bad_input(tmp_path: Path) -> None:
    w = SessionWriter(tmp_path / "s")
    with pytest.raises(FileExistsError, match="session.json"):
        SessionWriter(tmp_path / "s")
    # bad chunks are skipped and reported; the recording goes on
    assert w.write(Chunk("video", np.zeros(1), np.zeros((1, 4, 4, 3), np.float32), "cam"))
    w.write(Chunk("video", np.array([1.0]), np.zeros((1, 4, 4, 3), np.uint8), "cam"))
    w.write(Chunk("video", np.array([2.0]), np.zeros((1, 8, 4, 3), np.uint8), "cam"))
    w.write(Chunk("audio", np.array([3.0]), np.zeros((1, 1), np.float32), "cam"))
    w.write(Chunk("video", np.array([4.0]), np.ones((1, 4, 4, 3), np.uint8), "cam"))
    w.flush()
    stats = w.stats()["cam"]
    assert stats["samples"] == 2 and stats["rejected"] == 2
    assert "changed frame size from [4, 4, 3] to [8, 4, 3]" in stats["error"]
    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    assert meta["counters"]["cam"]["rejected"] == 1
    assert "stream 'cam' is video but got a audio chunk" in meta["counters"]["cam"]["error"]
    with pytest.raises(ValueError, match="add_segment.*t0 <= t1"):
        w.add_segment("x", 2.0, 1.0)
    w.close()
    assert not w.write(Chunk("video", np.array([5.0]), np.ones((1, 4, 4, 3), np.uint8), "cam"))  # closed
    np.testing.assert_array_equal(SessionReader(tmp_path / "s").read("cam").timestamps, [1.0, 4.0])


def test_extra_metadata_round_trips_and_may_not_reuse_format_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'segments'"):
        SessionWriter(tmp_path / "clash", metadata={"subject": 1, "segments": []})
    w = SessionWriter(tmp_path / "s", metadata={"subject": 7, "source": "utd-mhad"}, flush_interval=0.2)
    w.write(Chunk("imu", np.array([1.0, 2.0]), np.ones((2, 6), np.float32)))
    w.flush()
    assert SessionReader(tmp_path / "s").metadata == {"subject": 7, "source": "utd-mhad"}  # in every flush
    with pytest.raises(ValueError, match="'closed'"):
        w.update_metadata(trials=[], closed=False)
    with pytest.raises(ValueError, match="'when'"):
        w.update_metadata(when=object())
    w.update_metadata(trials=[{"label": "wave", "t0": 1.0, "t1": 2.0}], source="demo")
    w.close()
    with pytest.raises(SessionError, match="closed"):
        w.update_metadata(late=True)
    r = SessionReader(tmp_path / "s")
    assert r.metadata == {"subject": 7, "source": "demo", "trials": [{"label": "wave", "t0": 1.0, "t1": 2.0}]}
    assert r.closed and set(r.meta) - set(r.metadata) == SESSION_KEYS  # the format's own keys are untouched
    SessionWriter(tmp_path / "plain").close()
    assert set(SessionReader(tmp_path / "plain").meta) == SESSION_KEYS  # SESSION_KEYS lists what the format writes


def test_background_flush_without_writes(tmp_path: Path) -> None:
    w = SessionWriter(tmp_path / "s", flush_interval=0.2)
    w.write(Chunk("imu", np.array([1.0, 2.0]), np.ones((2, 6), np.float32)))
    deadline = time.monotonic() + 3.0
    samples = None
    while time.monotonic() < deadline:
        meta = json.loads((tmp_path / "s" / "session.json").read_text())
        samples = meta["streams"].get("imu", {}).get("samples")
        if samples == 2 and (tmp_path / "s" / "imu.csv").read_text().count("\n") == 3:
            break
        time.sleep(0.05)
    assert samples == 2
    assert len(SessionReader(tmp_path / "s").read("imu").timestamps) == 2  # readable before close
    w.close()


def test_truncated_tails_are_recovered_and_reported(tmp_path: Path) -> None:
    ref = _write_synthetic(tmp_path / "s")
    folder = tmp_path / "s"
    # cut imu.csv in the middle of its last line
    raw = (folder / "imu.csv").read_bytes()
    (folder / "imu.csv").write_bytes(raw[:-10])
    # un-finalise the WAV header (RIFF and data sizes as a crashed writer leaves them)
    wav = bytearray((folder / "audio.wav").read_bytes())
    wav[4:8] = struct.pack("<I", 0)
    pos = wav.find(b"data")
    wav[pos + 4 : pos + 8] = struct.pack("<I", 0)
    (folder / "audio.wav").write_bytes(bytes(wav))
    # cut the last video segment in half
    segs = sorted((folder / "video").iterdir())
    segs[-1].write_bytes(segs[-1].read_bytes()[: segs[-1].stat().st_size // 2])

    r = SessionReader(folder)
    rep = r.report
    assert rep["imu"]["truncated"] and rep["imu"]["samples"] == 59
    np.testing.assert_array_equal(r.read("imu").data, ref["imu"][:59])
    assert rep["audio"]["samples"] == 16000 and any("header" in n for n in rep["audio"]["notes"])
    assert np.max(np.abs(r.read("audio").data - ref["audio"])) <= 1 / 32768 + 1e-7
    v = r.read("video")
    assert rep["video"]["truncated"] and 0 < len(v.data) < 40
    np.testing.assert_array_equal(v.data, ref["color"][: len(v.data)])
    np.testing.assert_array_equal(v.timestamps, ref["t_color"][: len(v.data)])
    assert not rep["cam2"]["truncated"]


_CHILD = r"""
import sys, time, numpy as np
from devices.base import Chunk, host_now
from devices.session import SessionWriter
w = SessionWriter(sys.argv[1], {"audio": {"rate": 8000}, "video": {"fps": 30}})
t0 = host_now()
print("start", t0, flush=True)
iv = ia = ii = 0
while True:
    # timestamps are the real host time of the write; stdout logs what was handed to the writer
    el = host_now() - t0
    while iv / 30 <= el:
        f = np.full((1, 24, 32, 3), iv % 256, np.uint8)
        t = host_now()
        w.write(Chunk("video", np.array([t]), f))
        print("video", iv, 1, repr(t), flush=True); iv += 1
    while (ia + 80) / 8000 <= el:
        idx = np.arange(ia, ia + 80)
        t = host_now()
        w.write(Chunk("audio", t - (79 - np.arange(80)) / 8000, (np.sin(idx * 0.01) * 0.5).astype(np.float32)[:, None]))
        print("audio", ia, 80, repr(t), flush=True); ia += 80
    while ii / 50 <= el:
        t = host_now()
        w.write(Chunk("imu", np.array([t]), np.full((1, 6), ii * 0.25, np.float32)))
        print("imu", ii, 1, repr(t), flush=True); ii += 1
    time.sleep(0.004)
"""


def test_kill9_recovers_everything_older_than_one_second(tmp_path: Path) -> None:
    """A recording process is killed with SIGKILL: every chunk it handed to the writer more
    than 1 s before the kill is recovered, with its values and timestamps."""
    import selectors

    folder = tmp_path / "crash"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder)], stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=20), "recording child did not start within 20 s"
        t0 = float(proc.stdout.readline().split()[1])
        time.sleep(max(0.0, t0 + 2.5 - host_now()))
        t_kill = host_now()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log = proc.stdout.read().decode().splitlines()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    handed: dict[str, list[tuple[int, int, float]]] = {"video": [], "audio": [], "imu": []}
    for line in log:
        parts = line.split()
        if len(parts) == 4:  # the last line may be cut by the kill
            handed[parts[0]].append((int(parts[1]), int(parts[2]), float(parts[3])))
    limit = t_kill - 1.0
    r = SessionReader(folder)
    assert not r.closed
    rep = r.report
    for name, rate in (("video", 30), ("audio", 8000), ("imu", 50)):
        old = [(i, n, t) for i, n, t in handed[name] if t <= limit]
        assert sum(n for _, n, _ in old) >= 0.5 * rate, name  # the child really recorded for > 0.5 s
        need = old[-1][0] + old[-1][1]  # samples handed over before the limit
        got = r.read(name)
        assert len(got.timestamps) >= need, (name, len(got.timestamps), need, rep)
        # values and timestamps intact
        logged_t = {i + n - 1: t for i, n, t in handed[name]}
        for i, n, t in old:
            assert got.timestamps[i + n - 1] == pytest.approx(t, abs=1e-9)
        idx = np.arange(len(got.timestamps))
        if name == "video":
            assert np.array_equal(got.data[:, 0, 0, 0], idx % 256)
            assert (got.data == got.data[:, :1, :1, :1]).all()  # every pixel of frame k is k % 256
        elif name == "audio":
            assert np.max(np.abs(got.data[:, 0] - np.sin(idx * 0.01) * 0.5)) <= 1 / 32768 + 1e-7
            np.testing.assert_allclose(np.diff(got.timestamps[:80]), 1 / 8000, atol=1e-9)  # inside a block
        else:
            np.testing.assert_array_equal(got.data[:, 3], idx * 0.25)
        recovered = {k: t for k, t in logged_t.items() if k < len(got.timestamps)}
        assert all(got.timestamps[k] == pytest.approx(t, abs=1e-9) for k, t in recovered.items())


def test_video_segments_and_range_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _video_frames(30, 16, 16, 3, 9)
    ts = 5.0 + np.arange(30) / 10
    with SessionWriter(tmp_path / "s") as w:
        for i in range(0, 30, 3):
            w.write(Chunk("video", ts[i : i + 3], frames[i : i + 3]))
            w.flush()  # every flush closes the open segment
    assert len(list((tmp_path / "s" / "video").iterdir())) == 10
    decoded: list[str] = []
    orig = SessionReader._decode
    monkeypatch.setattr(SessionReader, "_decode", staticmethod(lambda p, c, n: decoded.append(p.name) or orig(p, c, n)))
    part = SessionReader(tmp_path / "s").read_range("video", 5.95, 6.35)
    assert decoded == ["000003.mkv", "000004.mkv"]  # frames 9..14 live there
    np.testing.assert_array_equal(part.timestamps, ts[10:14])
    np.testing.assert_array_equal(part.data, frames[10:14])
