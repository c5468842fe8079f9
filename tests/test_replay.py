"""Replaying a recorded session: exact samples, exact relative timing, finished state, looping."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from devices.base import Chunk, Source, host_now
from devices.replay import ReplaySource, open_replay
from devices.session import SessionReader, SessionWriter


def write_session(folder: Path, seconds: float = 1.0, t0: float = 1000.0) -> None:
    """A small session: gray 30 fps video, 8 kHz audio in 256-sample blocks, 50 Hz IMU."""
    rng = np.random.default_rng(5)
    nv, na, ni = int(30 * seconds), int(8000 * seconds), int(50 * seconds)
    with SessionWriter(folder, {"audio": {"rate": 8000}, "video": {"fps": 30}}) as w:
        tv = t0 + 0.004 + np.arange(nv) / 30
        frames = rng.integers(0, 256, (nv, 12, 16, 1), dtype=np.uint8)
        for i in range(nv):
            w.write(Chunk("video", tv[i : i + 1], frames[i : i + 1]))
        ta = t0 + np.arange(na) / 8000
        audio = rng.uniform(-0.5, 0.5, (na, 1)).astype(np.float32)
        for i in range(0, na, 256):
            w.write(Chunk("audio", ta[i : i + 256], audio[i : i + 256]))
        ti = t0 + 0.001 + np.arange(ni) / 50 + rng.uniform(0, 1e-3, ni)
        w.write(Chunk("imu", ti, rng.normal(size=(ni, 6)).astype(np.float32)))


class Collector:
    def __init__(self, source: Source) -> None:
        self.chunks: list[Chunk] = []
        self.arrivals: list[float] = []
        source.subscribe(self)

    def __call__(self, chunk: Chunk) -> None:
        self.arrivals.append(host_now())
        self.chunks.append(chunk)

    def ts(self) -> np.ndarray:
        return np.concatenate([c.timestamps for c in self.chunks])

    def data(self) -> np.ndarray:
        return np.concatenate([c.data for c in self.chunks])


def test_replay_reproduces_samples_and_relative_timing(tmp_path: Path) -> None:
    write_session(tmp_path / "s")
    ref = SessionReader(tmp_path / "s")
    sources = open_replay(tmp_path / "s", speed=10.0)
    assert sorted(s.name for s in sources) == ["audio", "imu", "video"]
    assert all(isinstance(s, Source) for s in sources)
    cols = {s.name: Collector(s) for s in sources}
    done = threading.Event()
    finished: list[str] = []
    for s in sources:
        s.on_finished(lambda src: (finished.append(src.name), len(finished) == 3 and done.set()))
    t_start = host_now()
    for s in sources:
        s.start()
    assert done.wait(5.0), f"replay did not finish; finished: {finished}"
    elapsed = host_now() - t_start
    for s in sources:
        s.stop()
    assert 0.09 < elapsed < 1.0  # ~1 s session at 10x

    t_first = min(float(ref.read(n).timestamps[0]) for n in ref.streams)
    anchors = []
    for name, col in cols.items():
        orig = ref.read(name)
        np.testing.assert_array_equal(col.data(), orig.data)  # exact samples
        ts = col.ts()
        # relative timing preserved exactly (scaled by 1/speed), same anchor for every stream
        anchor = ts - (orig.timestamps - t_first) / 10.0
        np.testing.assert_allclose(anchor, anchor[0], rtol=0, atol=1e-9)
        anchors.append(anchor[0])
        # chunks are delivered once their last sample's (replayed) time has come, not before
        lasts = np.array([c.timestamps[-1] for c in col.chunks])
        assert np.all(np.array(col.arrivals) >= lasts - 1e-6)
        assert np.median(np.array(col.arrivals) - lasts) < 0.05
        assert all(c.stream == name and c.modality == orig.modality for c in col.chunks)
    assert max(anchors) - min(anchors) < 1e-9
    assert t_start - 0.01 <= anchors[0] <= t_start + 0.1  # rebased onto the host clock
    audio_chunks = cols["audio"].chunks
    sizes = np.array([len(c.timestamps) for c in audio_chunks])
    # blocks kept (merged only when late)
    assert sizes.sum() == 8000 and np.all(sizes[:-1] % 256 == 0) and np.median(sizes) == 256
    h = next(s for s in sources if s.name == "audio").health()
    assert h.extra["state"] == "finished" and h.finished and not h.connected
    assert h.samples == 8000 and h.nominal_rate == pytest.approx(80000)


def test_loop_repeats_with_increasing_timestamps(tmp_path: Path) -> None:
    write_session(tmp_path / "s", seconds=0.2)
    (imu,) = [s for s in open_replay(tmp_path / "s", speed=10.0, loop=True) if s.name == "imu"]
    col = Collector(imu)
    imu.start()
    deadline = host_now() + 5.0
    while imu.health().extra["loops"] < 3 and host_now() < deadline:
        threading.Event().wait(0.01)
    imu.stop()
    assert imu.health().extra["state"] == "stopped" and not imu.finished.is_set()
    ts, data = col.ts(), col.data()
    assert len(ts) >= 30 and np.all(np.diff(ts) > 0)
    np.testing.assert_array_equal(data[10:20], data[:10])  # 10 samples per pass
    period = ts[10] - ts[0]
    np.testing.assert_allclose(ts[10:20] - ts[:10], period, atol=1e-9)


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="session.json not found"):
        open_replay(tmp_path)
    with pytest.raises(ValueError, match="speed must be > 0"):
        open_replay(tmp_path, speed=0)
    with pytest.raises(ValueError, match=r"ReplaySource\(x\): blocks"):
        ReplaySource("x", "imu", np.arange(3.0), np.zeros((3, 6)), blocks=[1, 1])
