"""ZeroMQ streaming over loopback tcp and ipc: byte-identical chunks, handshake, CURVE, mmg-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import zmq

from devices.base import Chunk, DeviceError, host_now
from devices.zmq_stream import RemoteSource, ZmqPublisher, open_remote
from emulation_devices import Collector
from mmg_live.sources import parse_imu_spec
from mmg_live.stream_cli import main

REPO = Path(__file__).resolve().parent.parent


def _chunks() -> list[Chunk]:
    rng = np.random.default_rng(7)
    out = []
    t = host_now()
    for i in range(12):
        frame = rng.integers(0, 256, (1, 120, 160, 3), dtype=np.uint8)
        out.append(Chunk("video", np.array([t + i / 30]), frame, "cam"))
        ta = t + (i * 320 + np.arange(320)) / 16000
        out.append(Chunk("audio", ta, rng.uniform(-1, 1, (320, 1)).astype(np.float32), "mic"))
        ti = t + (i * 4 + np.arange(4)) / 200 + rng.uniform(0, 1e-4, 4)
        out.append(Chunk("imu", ti, rng.normal(size=(4, 6)).astype(np.float32), "imu"))
    return out


def _round_trip(endpoint: str) -> None:
    pub = ZmqPublisher(endpoint)
    subs: dict[str, RemoteSource] = {}
    try:
        for name, modality in (("cam", "video"), ("mic", "audio"), ("imu", "imu")):
            pub.announce(name, modality)
        cols = {}
        for name in ("cam", "mic", "imu"):
            src = RemoteSource(pub.endpoint, name, connect_timeout=5.0)
            cols[name] = Collector()
            src.subscribe(cols[name])
            src.start()  # returns after the handshake: nothing published from now on is missed
            subs[name] = src
        sent = _chunks()
        for c in sent:  # published at once, no sleep
            pub.publish(c)
        for name in cols:
            assert cols[name].wait(12), f"{name}: got {len(cols[name].chunks)} chunks"
        for name, col in cols.items():
            got = col.chunks
            want = [c for c in sent if c.stream == name]
            assert len(got) == len(want) == 12
            for g, w in zip(got, want):
                assert (g.modality, g.stream) == (w.modality, w.stream)
                assert g.data.dtype == w.data.dtype and g.data.shape == w.data.shape
                assert g.data.tobytes() == w.data.tobytes()
                assert g.timestamps.tobytes() == w.timestamps.tobytes()  # original sender clock
            h = subs[name].health()
            assert h.connected and h.gaps == 0 and h.dropped == 0 and h.samples == sum(len(c.timestamps) for c in want)
            assert abs(h.clock_offset) < 0.05  # same host: offset ~ loopback latency
            assert subs[name].modality == want[0].modality  # from the beacon's catalogue
    finally:
        for src in subs.values():
            src.stop()
        pub.close()


def test_round_trip_tcp_loopback() -> None:
    _round_trip("tcp://127.0.0.1:*")


def test_round_trip_ipc_short_path() -> None:
    path = f"/tmp/mmg-{uuid.uuid4().hex[:8]}.ipc"
    try:
        _round_trip(f"ipc://{path}")
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_publisher_of_sources_and_discovery(tmp_path: Path) -> None:
    from devices.replay import ReplaySource

    ts = 50.0 + np.arange(40) / 100
    data = np.arange(240, dtype=np.float32).reshape(40, 6)
    replay = ReplaySource("wrist", "imu", ts, data, speed=20.0)
    pub = ZmqPublisher("tcp://127.0.0.1:*", beacon_interval=0.1)
    pub.add_source(replay)
    try:
        (remote,) = open_remote(pub.endpoint, timeout=5.0)
        assert (remote.name, remote.modality) == ("wrist", "imu")
        col = Collector()
        remote.subscribe(col)
        remote.start()
        assert pub.wait_for_subscribers(1, 5.0, topic="wrist")
        replay.start()
        assert replay.finished.wait(5.0)
        assert col.wait(1) and pub.flush()
        deadline = host_now() + 5.0
        while remote.health().samples < 40 and host_now() < deadline:
            threading.Event().wait(0.01)
        got_ts = np.concatenate([c.timestamps for c in col.chunks])
        np.testing.assert_array_equal(np.concatenate([c.data for c in col.chunks]), data)
        np.testing.assert_allclose(np.diff(got_ts), np.diff(ts) / 20.0, atol=1e-9)
        assert remote.health().nominal_rate == pytest.approx(100 * 20.0, rel=1e-6)
        with pytest.raises(DeviceError, match="publisher has no stream 'nope'; it has \\['wrist'\\]"):
            RemoteSource(pub.endpoint, "nope", connect_timeout=0.5).start()
        # a stream announced after the subscriber started waiting is picked up
        late = RemoteSource(pub.endpoint, "late", connect_timeout=5.0)
        threading.Timer(0.3, pub.announce, args=("late", "audio", 8000.0)).start()
        late.start()
        assert late.modality == "audio" and late.health().nominal_rate == 8000.0
        late.stop()
        remote.stop()
    finally:
        pub.close()


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_encryption(tmp_path: Path) -> None:
    import zmq.auth

    server_public, server_secret = zmq.auth.create_certificates(str(tmp_path), "server")
    pub = ZmqPublisher("tcp://127.0.0.1:*", curve_secret=server_secret)
    try:
        pub.announce("mic", "audio")
        src = RemoteSource(pub.endpoint, "mic", curve_server_key=server_public, connect_timeout=5.0)
        col = Collector()
        src.subscribe(col)
        src.start()
        pub.publish(Chunk("audio", np.array([3.0]), np.array([[0.75]], np.float32), "mic"))
        assert col.wait(1)
        assert col.chunks[-1].data.tolist() == [[0.75]] and col.chunks[-1].timestamps.tolist() == [3.0]
        src.stop()
        # a plain-text client never completes the handshake
        with pytest.raises(DeviceError, match="no mmg-stream publisher answered within 0.5 s"):
            RemoteSource(pub.endpoint, "mic", connect_timeout=0.5).start()
    finally:
        pub.close()


def test_cli_errors() -> None:
    assert parse_imu_spec("/dev/ttyACM0@230400") == ("/dev/ttyACM0", 230400)
    assert parse_imu_spec("/dev/ttyACM0") == ("/dev/ttyACM0", 115200)
    assert parse_imu_spec("loop://") == ("loop://", 115200)
    with pytest.raises(SystemExit) as exc:
        main(["--imu", "/dev/x@fast"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main([])
    with pytest.raises(SystemExit):
        main(["--bogus"])


def test_mmg_stream_process_publishes_a_replayed_session(tmp_path: Path) -> None:
    from devices.session import SessionWriter

    ts = 10.0 + np.arange(25) / 50
    data = np.random.default_rng(3).normal(size=(25, 6)).astype(np.float32)
    with SessionWriter(tmp_path / "s") as w:
        w.write(Chunk("imu", ts, data))
    endpoint = f"ipc:///tmp/mmg-{uuid.uuid4().hex[:8]}.ipc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmg_live.stream_cli", "--replay", str(tmp_path / "s"), "--speed", "5",
         "--bind", endpoint, "--wait-subscriber", "10", "--seconds", "8"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        src = RemoteSource(endpoint, "imu", connect_timeout=15.0)
        col = Collector()
        src.subscribe(col)
        src.start()
        deadline = host_now() + 10.0
        while src.health().samples < 25 and host_now() < deadline:
            threading.Event().wait(0.02)
        src.stop()
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "publishing on ipc://" in out and "imu: 25 samples sent" in out
    np.testing.assert_array_equal(np.concatenate([c.data for c in col.chunks]), data)
    got = np.concatenate([c.timestamps for c in col.chunks])
    np.testing.assert_allclose(np.diff(got), np.diff(ts) / 5, atol=1e-9)


def test_unique_names_renames_duplicates() -> None:
    from devices.replay import ReplaySource
    from mmg_live.sources import unique_names

    srcs = [ReplaySource(n, "imu", np.arange(2.0), np.zeros((2, 6))) for n in ("imu", "imu", "cam", "imu")]
    unique_names(srcs)
    assert [s.name for s in srcs] == ["imu", "imu_2", "cam", "imu_3"]


def test_rebase_shifts_by_the_estimated_offset_only_when_asked() -> None:
    pub = ZmqPublisher("tcp://127.0.0.1:*", beacon_interval=10.0)
    pub.announce("imu", "imu")
    plain, rebased = RemoteSource(pub.endpoint, "imu"), RemoteSource(pub.endpoint, "imu", rebase=True)
    cols = [Collector(), Collector()]
    try:
        for src, col in zip((plain, rebased), cols):
            src.subscribe(col)
            src.start()
        ts = np.array([100.0, 100.005])
        pub.publish(Chunk("imu", ts, np.ones((2, 6), np.float32)))
        assert cols[0].wait(1) and cols[1].wait(1)
        assert cols[0].chunks[0].timestamps.tobytes() == ts.tobytes()  # untouched by default
        offset = rebased.health().clock_offset
        assert 0.0 <= offset < 0.05  # same host: the beacon's one-way latency
        np.testing.assert_allclose(cols[1].chunks[0].timestamps, ts + offset, rtol=0, atol=1e-12)
    finally:
        plain.stop()
        rebased.stop()
        pub.close()
