"""Serial IMU: pure line-format parsing, and the source over loop:// and a socat pty pair."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from devices.base import DeviceError, Source
from devices.imu_serial import (
    ImuLineParser,
    LineSplitter,
    SerialImuSource,
    canonical_name,
    detect_format,
)
from emulation_devices import LineWriter, socat_pair, wait_for  # noqa: F401  (fixture)

NAN = float("nan")


# ---------------------------------------------------------------- pure parsing -----------
def _feed_all(parser: ImuLineParser, lines: list[str], dt: float = 0.005) -> tuple[np.ndarray, list]:
    out = []
    for i, line in enumerate(lines):
        out.extend(parser.feed(line, 100.0 + i * dt))
    return np.array([s.values for s in out]), [s.device_t for s in out]


def test_canonical_names():
    assert canonical_name("AccX") == ("ax", None)
    assert canonical_name("acc_y") == ("ay", None)
    assert canonical_name("gyro_z") == ("gz", None)
    assert canonical_name("gx (dps)") == ("gx", None)
    assert canonical_name("t_us") == ("t", "us")
    assert canonical_name("millis") == ("t", "ms")
    assert canonical_name("temp") == (None, None)


def test_detects_csv_six_axis():
    lines = [f"{0.01 * i:.2f},-0.98,0.10,1.2,0,-3" for i in range(8)]
    fmt = detect_format(lines)
    assert fmt.kind == "delimited" and fmt.delimiter == "," and fmt.axes == 6 and fmt.time_unit is None
    values, dev = _feed_all(ImuLineParser(), lines)
    assert values.shape == (8, 6)
    np.testing.assert_allclose(values[3], [0.03, -0.98, 0.10, 1.2, 0, -3])
    assert dev == [None] * 8


def test_detects_space_separated_accel_only_with_nan_gyro():
    lines = [f"{i} -0.5 0.25" for i in range(6)]
    parser = ImuLineParser()
    values, _ = _feed_all(parser, lines)
    assert parser.format.delimiter is None and parser.format.axes == 3
    np.testing.assert_array_equal(values[:, :3], [[i, -0.5, 0.25] for i in range(6)])
    assert np.isnan(values[:, 3:]).all()


def test_detects_tsv_header_with_ms_timestamps_and_ignored_column():
    lines = ["t_ms\tgx\tgy\tgz\tax\tay\taz\ttemp"]
    lines += [f"{1000 + 5 * i}\t{i}\t0\t0\t0.1\t0.2\t0.3\t25.5" for i in range(10)]
    parser = ImuLineParser()
    values, dev = _feed_all(parser, lines + [lines[0]])  # a repeated header is skipped silently
    assert parser.format.header is not None and parser.format.delimiter == "\t"
    assert parser.format.time_unit == 1e-3  # named in the header
    assert parser.bad_lines == 0
    assert len(values) == 10
    np.testing.assert_allclose(values[4], [0.1, 0.2, 0.3, 4, 0, 0])  # reordered to ax..gz
    np.testing.assert_allclose(dev, [1.0 + 0.005 * i for i in range(10)])


@pytest.mark.parametrize("ticks_per_sample,unit", [(5000, 1e-6), (5, 1e-3)])
def test_time_unit_from_the_arrival_rate(ticks_per_sample, unit):
    lines = [f"{100000 + ticks_per_sample * i},0,0,1,0,0,0" for i in range(8)]
    # No nominal rate: the host arrival spacing (5 ms) decides between µs and ms.
    fmt = detect_format(lines, [50.0 + 0.005 * i for i in range(8)], nominal_rate=None)
    assert fmt.columns[0] == "t" and fmt.time_unit == unit
    # And with a nominal rate but no useful arrival times (one burst):
    assert detect_format(lines, [50.0] * 8, nominal_rate=200.0).time_unit == unit


def test_pairs_with_time_key_and_unit_conversion():
    lines = [f"ms:{10 * i} ax:0 ay:0 az:{9.80665:.5f} gx:{math.pi:.6f} gy:0 gz:{-math.pi / 2:.6f}" for i in range(6)]
    parser = ImuLineParser(accel_unit="m/s2", gyro_unit="rad/s")
    values, dev = _feed_all(parser, lines, dt=0.01)
    assert parser.format.kind == "pairs" and parser.format.time_unit == 1e-3
    np.testing.assert_allclose(values[0], [0, 0, 1.0, 180.0, 0, -90.0], atol=1e-4)
    np.testing.assert_allclose(dev, [0.01 * i for i in range(6)])


def test_override_columns_and_bad_lines_counted_with_reasons():
    parser = ImuLineParser(columns=["t", "ax", "ay", "az", "_"], time_unit="us")
    good = [f"{i * 1000},0.1,0.2,0.3,99" for i in range(3)]
    bad = ["0.1,0.2", "a,b,c,d,e", "1,2,3,inf,5", "1,2,nan,4,5", "ax:1 ay:2 az:3", "1;2;3;4;5"]
    values, dev = _feed_all(parser, good[:1] + bad + good[1:])
    assert len(values) == 3 and parser.bad_lines == len(bad)
    np.testing.assert_allclose(dev, [0.0, 0.001, 0.002])
    assert "expected 5" in parser.last_bad
    with pytest.raises(ValueError, match="need at least ax, ay, az"):
        ImuLineParser(columns=["t", "gx", "gy", "gz"], time_unit="us")
    with pytest.raises(ValueError, match="give time_unit"):
        ImuLineParser(columns=["t", "ax", "ay", "az"])
    with pytest.raises(ValueError, match="accel_unit"):
        ImuLineParser(accel_unit="furlongs")


def test_32bit_microsecond_counter_wraps_forward():
    parser = ImuLineParser(columns=["t_us", "ax", "ay", "az"])
    ticks = [2**32 - 10_000, 2**32 - 5_000, 0, 5_000]  # micros() wraps after 71.6 min
    _, dev = _feed_all(parser, [f"{t},0,0,1" for t in ticks])
    np.testing.assert_allclose(np.diff(dev), [0.005, 0.005, 0.005], atol=1e-9)


def test_garbage_before_detection_is_counted_not_lost():
    lines = ["garbage ###", "0.1,0.2", "1,2,3,4,5,6", "@@", "2,2,3,4,5,6", "3,2,3,4,5,6", "4,2,3,4,5,6", "5,2,3,4,5,6"]
    parser = ImuLineParser()
    values, _ = _feed_all(parser, lines)
    np.testing.assert_array_equal(values[:, 0], [1, 2, 3, 4, 5])
    assert parser.bad_lines == 3


def test_unrecognisable_stream_is_flagged():
    parser = ImuLineParser(give_up_after=10)
    _feed_all(parser, [f"{i},{i},{i},{i},{i}" for i in range(15)])  # five columns: ambiguous
    assert parser.undetected and parser.format is None and parser.bad_lines == 5


def test_line_splitter_drops_first_fragment_and_overlong_lines():
    sp = LineSplitter(max_line_bytes=20)
    assert sp.feed(b"ial,line\n1,2,") == []
    assert sp.feed(b"3\n" + b"9" * 30 + b"\n4,5,6\r\n") == [b"1,2,3", None, b"4,5,6\r"]
    assert sp.partial_dropped == 1
    assert sp.feed(b"x" * 25) == [] and sp.feed(b"yy\nok\n") == [None, b"ok"]


# ---------------------------------------------------------------- source over loop:// ----
def test_loop_source_without_device_time_smooths_host_time():
    src = SerialImuSource("loop://", name="wrist")
    assert isinstance(src, Source)
    chunks = []
    src.subscribe(chunks.append)
    src.start()
    try:
        src.write(b"\n")
        t0 = time.monotonic()
        for i in range(150):  # 1.5 s at 100 Hz, name:value pairs, no timestamp
            delay = t0 + i / 100 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            src.write(f"ax:{i / 1000:.3f} ay:0.5 az:-1 gx:{i} gy:0 gz:0\n".encode())
        wait_for(lambda: src.health().samples >= 150, 3.0, "150 samples")
    finally:
        src.stop()
    ts = np.concatenate([c.timestamps for c in chunks])
    data = np.concatenate([c.data for c in chunks])
    assert data.dtype == np.float32 and data.shape == (150, 6)
    np.testing.assert_array_equal(np.round(data[:, 3]).astype(int), np.arange(150))
    assert all(c.stream == "wrist" and c.modality == "imu" for c in chunks)
    assert np.all(np.diff(ts) > 0)
    h = src.health()
    assert h.nominal_rate == pytest.approx(100.0, rel=0.05)
    assert np.median(np.diff(ts)) == pytest.approx(0.01, abs=0.5e-3)
    assert h.bad_lines == 0 and h.extra["partial_lines_dropped"] == 1 and h.extra["axes"] == 6
    assert h.extra["format"].startswith("pairs")


def test_missing_port_raises_device_error(tmp_path):
    src = SerialImuSource(str(tmp_path / "ttyNOPE"))
    with pytest.raises(DeviceError, match=r"serial IMU .*ttyNOPE: cannot open at 115200 baud"):
        src.start()


# ---------------------------------------------------------------- socat pty pair ---------
RATE = 200.0


def _valid_line(seq: int) -> bytes:
    # Device clock in µs, accel x carries the sequence number, gyro x its remainder by 100.
    return f"{1_000_000 + seq * 5000},{seq / 1000:.3f},-0.98,0.1,{seq % 100},0,-3\n".encode()


GARBAGE = [
    b"\xff\xfe\x00garbage\n",  # undecodable
    b"0.12,0.5\n",  # partial: too few columns
    b"abc,def,ghi,jkl,mno,pqr,stu\n",  # words
    b"9" * 600 + b"\n",  # over-long
    b"ax:1 ay:2 az:3\n",  # another format
    b"1,2,3,4,5,6,7,8,9\n",  # too many columns
    b"1,2,3,inf,5,6,7\n",  # not finite
]


def _collect(src: SerialImuSource) -> tuple[list, threading.Lock]:
    chunks: list = []
    lock = threading.Lock()

    def on_chunk(chunk):
        with lock:
            chunks.append(chunk)

    src.subscribe(on_chunk)
    return chunks, lock


def _arrays(chunks, lock):
    with lock:
        return np.concatenate([c.timestamps for c in chunks]), np.concatenate([c.data for c in chunks])


def test_pty_200hz_10s_no_lost_lines(socat_pair):  # noqa: F811
    src = SerialImuSource(str(socat_pair.port), rate=RATE)
    chunks, lock = _collect(src)
    src.start()
    writer = LineWriter(socat_pair.device, RATE, lambda s: (_valid_line(s), False), duration=10.0)
    started = time.monotonic()
    writer.start()
    try:
        writer.join(timeout=15.0)
        assert not writer.is_alive()
        wait_for(lambda: src.health().samples >= len(writer.written), 3.0, "every written line")
    finally:
        src.stop()
    ts, data = _arrays(chunks, lock)
    seqs = np.round(data[:, 0] * 1000).astype(int)
    assert len(writer.written) == 2000
    np.testing.assert_array_equal(seqs, writer.written)  # 0 lost, none duplicated, in order
    np.testing.assert_array_equal(data[:, 3], np.array(writer.written) % 100)
    np.testing.assert_allclose(data[:, 1:3], np.tile([-0.98, 0.1], (len(seqs), 1)), rtol=1e-6)
    h = src.health()
    assert h.bad_lines == 0 and h.dropped == 0 and h.gaps == 0 and h.reconnects == 0
    assert np.all(np.diff(ts) > 0)
    assert np.median(np.diff(ts)) == pytest.approx(1 / RATE, abs=0.1e-3)
    # The device clock is the writer's schedule: mapped times sit on it (started + seq/rate,
    # up to the thread start-up offset), so their spread around it is tiny.
    resid = ts - (started + seqs / RATE)
    assert np.ptp(resid[-1000:]) < 3e-3
    print(f"drift {h.clock_drift_ppm:.0f} ppm, mapped-time spread {np.ptp(resid[-1000:]) * 1e3:.2f} ms")
    assert abs(h.clock_drift_ppm) < 2000, f"drift {h.clock_drift_ppm:.0f} ppm; {h.extra}"
    assert h.extra["format"] == "csv t[us],ax,ay,az,gx,gy,gz"
    assert 0 <= h.age() < 5.0


def test_pty_garbage_lines_counted_exactly(socat_pair):  # noqa: F811
    def make_line(seq: int) -> tuple[bytes, bool]:
        if seq % 10 == 9:
            return GARBAGE[(seq // 10) % len(GARBAGE)], True
        return _valid_line(seq), False

    src = SerialImuSource(str(socat_pair.port))  # no rate: µs detected from arrival spacing
    chunks, lock = _collect(src)
    src.start()
    writer = LineWriter(socat_pair.device, RATE, make_line, duration=5.0)
    writer.start()
    try:
        writer.join(timeout=10.0)
        wait_for(lambda: src.health().samples >= len(writer.written), 3.0, "every valid line")
        wait_for(lambda: src.health().bad_lines >= writer.garbage, 2.0, "every garbage line counted")
    finally:
        src.stop()
    _, data = _arrays(chunks, lock)
    np.testing.assert_array_equal(np.round(data[:, 0] * 1000).astype(int), writer.written)
    h = src.health()
    assert writer.garbage == 100
    assert h.bad_lines == writer.garbage
    assert h.gaps == 0 and h.dropped == 0
    assert h.nominal_rate == pytest.approx(RATE, rel=0.01)


def test_pty_unplug_and_replug_reconnects(socat_pair):  # noqa: F811
    src = SerialImuSource(str(socat_pair.port), rate=RATE, reconnect_poll_s=0.05)
    chunks, lock = _collect(src)
    src.start()
    writer = LineWriter(socat_pair.device, RATE, lambda s: (_valid_line(s), False), duration=4.0)
    writer.start()
    try:
        time.sleep(1.5)
        before = src.health().samples
        socat_pair.stop()  # unplugged: the links vanish
        wait_for(lambda: not src.health().connected, 2.0, "the source to notice")
        assert "lost" in src.health().error
        time.sleep(0.5)
        socat_pair.start()  # plugged back in, same path
        wait_for(lambda: src.health().reconnects == 1, 3.0, "a reconnect")
        writer.join(timeout=6.0)
        wait_for(lambda: src.health().samples >= before + 200, 3.0, "samples after the reconnect")
    finally:
        writer.stop_event.set()
        src.stop()
    ts, data = _arrays(chunks, lock)
    seqs = np.round(data[:, 0] * 1000).astype(int)
    h = src.health()
    assert h.reconnects == 1 and h.gaps == 1 and h.error is None
    assert set(seqs) <= set(writer.written)
    jump = int(np.argmax(np.diff(seqs)))
    # One hole, as long in time as in samples; contiguous on both sides.
    assert np.all(np.diff(seqs)[np.arange(len(seqs) - 1) != jump] == 1)
    hole = (seqs[jump + 1] - seqs[jump]) / RATE
    assert 0.5 < h.extra["last_gap_s"] < 2.0
    assert h.extra["last_gap_s"] == pytest.approx(ts[jump + 1] - ts[jump], abs=1e-6)
    assert h.extra["last_gap_s"] == pytest.approx(hole, abs=0.01)
    assert seqs[-1] >= writer.written[-1] - 1
