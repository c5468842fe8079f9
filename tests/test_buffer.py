"""StreamBuffer ring semantics, Synchronizer offsets, and the one coverage measure on buffered windows."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest

from devices.base import Chunk
from mmg_live.live.buffer import StreamBuffer, Synchronizer
from mmg_live.live.windowing import fetch_window
from mmg_live.modalities import ImuSpec, ModalitySpecs, PreprocessError, require_coverage, window_coverage


def _imu(ts: np.ndarray) -> Chunk:
    ts = np.asarray(ts, dtype=np.float64)
    data = np.stack([ts * 10 + k for k in range(6)], axis=1).astype(np.float64)
    return Chunk("imu", ts, data)


def _all(buf: StreamBuffer) -> tuple[np.ndarray, np.ndarray]:
    return buf.window(-np.inf, np.inf)


def test_capacity_formula() -> None:
    buf = StreamBuffer("audio", 2.0, 16000, (1,), np.float32)
    assert buf.capacity == int(np.ceil(2.0 * 16000 * 1.25)) + 16
    assert len(buf) == 0 and buf.latest_time() is None


def test_wraparound_matches_reference_concatenation() -> None:
    rng = np.random.default_rng(0)
    buf = StreamBuffer("imu", 1.0, 100, (6,), np.float64)  # capacity 141
    ref_ts: list[float] = []
    t = 0.0
    for _ in range(300):
        n = int(rng.integers(1, 40))
        ts = t + np.arange(1, n + 1) * 0.01
        t = float(ts[-1])
        buf.append(_imu(ts))
        ref_ts.extend(ts.tolist())
        ref = np.asarray(ref_ts[-buf.capacity :])
        data, got = _all(buf)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(data, _imu(ref).data)
        # random windows against a boolean mask over the reference
        a, b = np.sort(rng.uniform(ref[0] - 0.1, ref[-1] + 0.1, 2))
        data_w, ts_w = buf.window(a, b)
        np.testing.assert_array_equal(ts_w, ref[(ref >= a) & (ref < b)])
        np.testing.assert_array_equal(data_w[:, 3], ts_w * 10 + 3)
        # window_select: every timestamp, only the picked rows' data (across the wrap too)
        picks = []
        data_s, ts_s = buf.window_select(a, b, lambda t, picks=picks: picks.append(t.copy()) or np.arange(len(t))[::-3])
        np.testing.assert_array_equal(ts_s, ts_w)
        if len(ts_w):
            np.testing.assert_array_equal(picks[0], ts_w)
            np.testing.assert_array_equal(data_s, data_w[::-1][::3])
    assert buf.appended == len(ref_ts) and len(ref_ts) > 20 * buf.capacity


def test_window_exact_boundaries() -> None:
    buf = StreamBuffer("imu", 10.0, 4, (6,), np.float64)
    buf.append(_imu(np.arange(20) * 0.25))  # exact binary fractions
    _, ts = buf.window(1.0, 2.0)
    np.testing.assert_array_equal(ts, [1.0, 1.25, 1.5, 1.75])  # [t0, t1): t0 in, t1 out
    assert len(buf.window(1.0, 1.0)[1]) == 0
    assert len(buf.window(2.0, 1.0)[1]) == 0
    np.testing.assert_array_equal(buf.window(-5, 0.25)[1], [0.0])
    np.testing.assert_array_equal(buf.window(4.75, 99)[1], [4.75])
    assert len(buf.window(5.0, 99)[1]) == 0
    data, ts = buf.latest(0.5)
    np.testing.assert_array_equal(ts, [4.25, 4.5, 4.75])
    assert data.shape == (3, 6)


def test_chunk_larger_than_capacity_keeps_newest() -> None:
    buf = StreamBuffer("audio", 0.1, 100, (1,), np.float32)  # capacity 13 + 16 = 29
    ts = np.arange(100) * 0.01
    buf.append(Chunk("audio", ts, ts[:, None].astype(np.float32)))
    data, got = _all(buf)
    np.testing.assert_array_equal(got, ts[-buf.capacity :])
    np.testing.assert_array_equal(data[:, 0], ts[-buf.capacity :].astype(np.float32))
    assert buf.dropped_overflow == 100 - buf.capacity


def test_out_of_order_and_duplicates_are_dropped_and_counted() -> None:
    buf = StreamBuffer("imu", 10.0, 10, (6,), np.float64)
    buf.append(_imu([1.0, 2.0, 3.0]))
    assert buf.append(_imu([2.5, 3.0, 4.0])) == 1  # 2.5 older than newest, 3.0 duplicate
    assert buf.append(_imu([5.0, 4.5, 5.0, 6.0])) == 2  # inside one chunk too
    assert buf.append(_imu([0.5])) == 0
    _, ts = _all(buf)
    np.testing.assert_array_equal(ts, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert buf.dropped_out_of_order == 2 + 2 + 1
    assert buf.append(Chunk("imu", np.array([7.0]), np.zeros((1, 3)))) == 0  # wrong shape: skipped, not raised
    assert buf.rejected == 1 and "StreamBuffer(imu): chunk samples have shape (3,), expected (6,)" == buf.error
    assert buf.stats()["held"] == 6


def test_append_is_o_chunk_structurally() -> None:
    """No reallocation ever, one slot written per stored sample, no capacity-sized temporaries."""
    buf = StreamBuffer("audio", 60.0, 16000, (1,), np.float32)  # ~1.2 M slots, ~14 MB
    ring_ptr = buf._data.__array_interface__["data"][0]
    ts_ptr = buf._ts.__array_interface__["data"][0]
    block = 1600
    t = 0.0
    peaks = []
    for i in range(int(buf.capacity * 1.5) // block):
        ts = t + (np.arange(block) + 1) / 16000
        t = float(ts[-1])
        chunk = Chunk("audio", ts, np.zeros((block, 1), np.float32))
        if i in (1, 300, 700, 1100):  # empty, half full, full, wrapped
            tracemalloc.start()
            buf.append(chunk)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        else:
            buf.append(chunk)
    assert buf._data.__array_interface__["data"][0] == ring_ptr
    assert buf._ts.__array_interface__["data"][0] == ts_ptr
    assert buf.copied == buf.appended == (i + 1) * block
    # temporaries scale with the chunk (1600 samples ~ 20 KB), not with the ring (~14 MB)
    assert max(peaks) < 200_000, peaks
    assert buf.capacity * 12 > 10_000_000


def test_coverage_of_gappy_stream_and_liveness() -> None:
    rate = 100.0
    a = StreamBuffer("imu", 5.0, rate, (6,), np.float64, name="full")
    b = StreamBuffer("imu", 5.0, rate, (6,), np.float64, name="gappy")
    c = StreamBuffer("imu", 5.0, rate, (6,), np.float64, name="burst")
    t = np.arange(1, 201) / rate  # (0, 2]
    a.append(_imu(t))
    gappy = t[(t <= 1.25) | (t > 1.75)]  # a 0.5 s gap in the window (1, 2]
    b.append(_imu(gappy))
    burst = 1.0 + np.arange(1, 101) / (2 * rate)  # 100 samples squeezed into 0.5 s
    c.append(_imu(burst))
    sync = Synchronizer([a, b, c])
    assert sync.latest_time() == 2.0
    specs = ModalitySpecs(imu=ImuSpec(window_s=1.0))  # the window (1, 2]
    w = {name: fetch_window(sync.buffers, {"imu": name}, specs, 2.0, min_coverage=0.6) for name in sync.buffers}
    assert w["full"].coverage["imu"] == pytest.approx(1.0) and w["full"].live == ["imu"]
    assert w["gappy"].coverage["imu"] == pytest.approx(0.5) and w["gappy"].live == []
    assert w["burst"].coverage["imu"] == pytest.approx(0.505) and w["burst"].live == []  # span-limited
    assert "covers 50% of its 1 s window (need 60%)" in w["gappy"].problems["imu"]
    _, ts = b.window(1.0 + 1e-9, 2.0 + 1e-9)
    np.testing.assert_array_equal(ts, gappy[gappy > 1.0 + 1e-9])
    assert window_coverage(np.zeros(0), (1.0, 2.0), rate) == 0.0
    with pytest.raises(PreprocessError, match="empty window"):
        require_coverage("imu", ts, (1.0, 1.0), rate, 0.6)


def test_offsets_are_applied_at_read() -> None:
    buf = StreamBuffer("imu", 10.0, 4, (6,), np.float64)
    sync = Synchronizer({"imu": buf}, offsets={"imu": 0.5})
    buf.append(_imu(np.arange(8) * 0.25))
    data, ts = buf.window(1.0, 1.5)
    np.testing.assert_array_equal(ts, [1.0, 1.25])  # raw 0.5, 0.75 shifted by +0.5
    np.testing.assert_array_equal(data[:, 0], [5.0, 7.5])  # data untouched
    assert sync.latest_time() == 1.75 + 0.5
    with pytest.raises(KeyError, match="no stream 'x'"):
        sync.set_offset("x", 1.0)


def test_window_select_sees_offset_time_and_rejects_bad_indices() -> None:
    buf = StreamBuffer("imu", 10.0, 4, (6,), np.float64, offset=0.5)
    buf.append(_imu(np.arange(8) * 0.25))
    seen = []
    data, ts = buf.window_select(1.0, 2.0, lambda t: seen.append(t.copy()) or np.array([3, 0, 0]))
    np.testing.assert_array_equal(seen[0], [1.0, 1.25, 1.5, 1.75])  # offset-corrected, as window()
    np.testing.assert_array_equal(ts, seen[0])
    np.testing.assert_array_equal(data[:, 0], [12.5, 5.0, 5.0])  # raw times 1.25, 0.5, 0.5
    with pytest.raises(IndexError, match="outside 0..3"):
        buf.window_select(1.0, 2.0, lambda t: np.array([4]))


def test_concurrent_writer_and_reader_for_two_seconds() -> None:
    rate = 2000.0
    buf = StreamBuffer("imu", 0.5, rate, (6,), np.float64)
    stop = threading.Event()
    errors: list[str] = []
    reads = [0, 0]  # windows read, samples checked

    def writer() -> None:
        i = 0
        rng = np.random.default_rng(1)
        while not stop.is_set():
            n = int(rng.integers(1, 64))
            ts = (i + np.arange(n)) / rate
            if rng.random() < 0.05:
                ts = np.concatenate((ts[:1] - 1.0, ts))  # stale sample: must be dropped
            buf.append(_imu(ts))
            i += n
            if i % 256 < n:
                time.sleep(0)

    def reader() -> None:
        while not stop.is_set():
            t = buf.latest_time()
            if t is None:
                continue
            data, ts = buf.window(t - 0.3, t + 1.0)
            if len(ts) and not np.all(np.diff(ts) > 0):
                errors.append("timestamps not strictly increasing")
            if not np.array_equal(data, _imu(ts).data):
                errors.append("data inconsistent with timestamps")
            reads[0] += 1
            reads[1] += len(ts)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for th in threads:
        th.start()
    time.sleep(2.0)
    stop.set()
    for th in threads:
        th.join(5.0)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert reads[0] > 50 and reads[1] > 0
    assert buf.appended > 3 * buf.capacity  # the ring wrapped several times during the test
    assert buf.dropped_out_of_order > 0
