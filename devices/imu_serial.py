"""Serial IMU: text lines from a microcontroller over a (USB) serial port, read with pyserial.

Line formats (auto-detected from the first good lines, or fixed with ``columns=``):

* numbers separated by commas, tabs, semicolons or spaces: ``0.01,-0.98,0.10,1.2,0,-3``;
  3 columns = accel, 6 = accel + gyro, 4 / 7 = a device-timestamp column first;
* the same with a header line of column names: ``t_us,ax,ay,az,gx,gy,gz`` (any order; unknown
  columns such as ``temp`` are ignored);
* ``name:value`` pairs, Arduino serial-plotter style: ``ax:0.01 ay:-0.98 az:0.1 gx:1.2 gy:0 gz:-3``.

Emitted data is always ``[n, 6]`` float32: accel x,y,z in g then gyro x,y,z in deg/s. A 3-axis
(accel-only) device gets **NaN gyro columns** (shape stays fixed; NaN says "not measured",
never a fake zero); ``health().extra["axes"]`` is 3 or 6.

A device timestamp column (µs, ms or s: detected from its increments against the nominal
rate or the arrival rate, or set with ``time_unit=``; 32-bit counter wrap-around is
followed) is mapped onto the host clock with
:class:`devices.clock.ClockFit`; without one, host receive times are smoothed against the
rate with :class:`devices.clock.RateSmoother`.

Bad lines (garbage, partial, over-long, wrong column count, non-finite values) are counted
in ``health().bad_lines`` and skipped; they never stop the source. Empty lines and repeats of
the header are skipped without counting. The first (possibly partial) line after each open
is always discarded (``extra["partial_lines_dropped"]``).
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from devices.base import Chunk, DeviceError, SourceBase, host_now
from devices.clock import ClockFit, RateMeter, RateSmoother

CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")
TIME = "t"
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
ACCEL_UNITS = {"g": 1.0, "m/s2": 1.0 / 9.80665}
GYRO_UNITS = {"deg/s": 1.0, "rad/s": 180.0 / math.pi}

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ACCEL = re.compile(r"^(a|acc|accel|accelerometer|lin)([xyz])$|^([xyz])(a|acc|accel)$")
_GYRO = re.compile(r"^(g|gyr|gyro|gyroscope|w|omega|rot)([xyz])$|^([xyz])(g|gyr|gyro)$")
_TIME_NAMES = {
    "t": None, "time": None, "ts": None, "timestamp": None, "stamp": None,
    "us": "us", "micros": "us", "tus": "us", "timeus": "us", "timestampus": "us", "tmicros": "us",
    "ms": "ms", "millis": "ms", "tms": "ms", "timems": "ms", "timestampms": "ms", "tmillis": "ms",
    "ts_s": "s", "ts_sec": "s", "tsec": "s", "times": "s", "timesec": "s", "seconds": "s",
}


class BadLine(ValueError):
    """A line that does not fit the stream's format; the message says why."""


def canonical_name(name: str) -> tuple[str | None, str | None]:
    """Map a column/key name to ``(channel, time_unit_hint)``.

    ``channel`` is one of :data:`CHANNELS`, ``"t"`` for a device timestamp, or None when the
    name is not recognised (the column is ignored). ``time_unit_hint`` is ``"us"``, ``"ms"``,
    ``"s"`` or None.
    """
    raw = name.strip().lower()
    raw = re.sub(r"\(.*?\)|\[.*?\]", "", raw)  # "ax (g)", "t[us]"
    key = re.sub(r"[^a-z0-9]", "", raw)
    if raw.replace(" ", "") in ("ts_s", "ts_sec"):
        return TIME, "s"
    if key in _TIME_NAMES:
        return TIME, _TIME_NAMES[key]
    for pattern, prefix in ((_ACCEL, "a"), (_GYRO, "g")):
        m = pattern.match(key)
        if m:
            return prefix + (m.group(2) or m.group(3)), None
    return None, None


def _is_number(token: str) -> bool:
    return bool(_NUMBER.match(token))


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [t.strip() for t in line.split(delimiter)]


def _pairs(line: str) -> dict[str, str]:
    return dict(t.split(":", 1) for t in re.split(r"[\s,;]+", line) if t)


def _guess_delimiter(line: str) -> str | None:
    for d in (",", "\t", ";"):
        if d in line:
            return d
    return None


@dataclass(frozen=True)
class LineFormat:
    """How one line of the stream is laid out.

    Attributes:
        kind: ``"delimited"`` or ``"pairs"``.
        columns: delimited: channel per column (``"ax"`` .. ``"gz"``, ``"t"`` or None to ignore);
            pairs: the recognised keys, as ``"key=channel"`` strings.
        delimiter: delimited: ``","``, ``"\\t"``, ``";"`` or None for any whitespace.
        time_unit: seconds per device-timestamp tick, or None when there is no time column.
        header: the header tokens when the stream has a header line (its repeats are skipped).
    """

    kind: str
    columns: tuple[str | None, ...]
    delimiter: str | None = None
    time_unit: float | None = None
    header: tuple[str, ...] | None = None

    @property
    def channels(self) -> set[str]:
        if self.kind == "pairs":
            return {c.split("=", 1)[1] for c in self.columns}
        return {c for c in self.columns if c}

    @property
    def axes(self) -> int:
        return 6 if {"gx", "gy", "gz"} <= self.channels else 3

    def describe(self) -> str:
        """One line for the GUI/health: e.g. ``csv t[ms],ax,ay,az,gx,gy,gz``."""
        unit = {1.0: "s", 1e-3: "ms", 1e-6: "us"}.get(self.time_unit or 0.0, "")
        if self.kind == "pairs":
            keys = (c.split("=", 1)[0] + (f"[{unit}]" if c.endswith("=t") else "") for c in self.columns)
            return "pairs " + " ".join(keys)
        name = {",": "csv", "\t": "tsv", ";": "semicolon", None: "space"}[self.delimiter]
        cols = ",".join((c + (f"[{unit}]" if c == TIME else "")) if c else "_" for c in self.columns)
        return f"{name} {cols}" + (" (header)" if self.header else "")

    def parse(self, line: str) -> tuple[float | None, np.ndarray]:
        """Parse one line (already stripped) into ``(device_ticks or None, values[6])`` in the
        device's own units; absent channels are NaN. Raises :class:`BadLine`."""
        values = np.full(6, np.nan, dtype=np.float64)
        ticks: float | None = None
        if self.kind == "pairs":
            mapping = dict(c.split("=", 1) for c in self.columns)
            seen = set()
            for token in re.split(r"[\s,;]+", line):
                if not token:
                    continue
                key, sep, val = token.partition(":")
                if not sep or not _is_number(val.strip()):
                    raise BadLine(f"not a name:value pair: {token[:40]!r}")
                ch = mapping.get(key.strip())
                if ch is None:
                    continue
                seen.add(ch)
                if ch == TIME:
                    ticks = float(val)
                else:
                    values[CHANNELS.index(ch)] = float(val)
            missing = self.channels - seen
            if missing:
                raise BadLine(f"missing {','.join(sorted(missing))}")
        else:
            tokens = _split(line, self.delimiter)
            if len(tokens) != len(self.columns):
                raise BadLine(f"{len(tokens)} columns, expected {len(self.columns)}")
            for tok, ch in zip(tokens, self.columns):
                if ch is None:
                    continue
                if not _is_number(tok):
                    raise BadLine(f"not a number: {tok[:40]!r}")
                if ch == TIME:
                    ticks = float(tok)
                else:
                    values[CHANNELS.index(ch)] = float(tok)
        return ticks, values


def _columns_for_count(n: int) -> tuple[str | None, ...] | None:
    return {
        3: ("ax", "ay", "az"),
        6: CHANNELS,
        4: (TIME, "ax", "ay", "az"),
        7: (TIME, *CHANNELS),
    }.get(n)


def _signature(line: str) -> tuple | None:
    """What a line looks like: header, pairs or numbers (None: unusable for detection)."""
    if ":" in line:
        keys = []
        for token in re.split(r"[\s,;]+", line):
            if not token:
                continue
            key, sep, val = token.partition(":")
            if not sep or not _is_number(val.strip()) or not key.strip():
                return None
            keys.append(key.strip())
        return ("pairs", tuple(keys)) if keys else None
    delim = _guess_delimiter(line)
    tokens = _split(line, delim)
    if all(_is_number(t) for t in tokens):
        return ("num", delim, len(tokens))
    names = [canonical_name(t)[0] for t in tokens]
    if sum(1 for n in names if n in ("ax", "ay", "az")) == 3 and not any(_is_number(t) for t in tokens):
        return ("header", delim, tuple(tokens))
    return None


def _choose_time_unit(ticks: np.ndarray, host: np.ndarray, nominal_rate: float | None, hint: str | None) -> float:
    if hint:
        return TIME_UNITS[hint]
    inc = np.diff(ticks)
    d = float(np.median(inc))
    if nominal_rate:
        period = 1.0 / nominal_rate
    elif host.size >= 2 and host[-1] - host[0] > 0.02:
        period = (host[-1] - host[0]) / (host.size - 1)
    else:
        return 1e-6 if d >= 100 else (1e-3 if d >= 0.5 else 1.0)
    return min(TIME_UNITS.values(), key=lambda u: abs(math.log(d * u / period)))


def detect_format(
    lines: Sequence[str],
    host_times: Sequence[float] | None = None,
    nominal_rate: float | None = None,
    min_lines: int = 5,
) -> LineFormat | None:
    """Infer the line format from the first lines of a stream (pure function).

    Returns None when ``lines`` hold fewer than ``min_lines`` consistent data lines. Lines of
    another shape (garbage, partial lines) are ignored. The time unit of a timestamp column
    is chosen among s/ms/µs by comparing its increments with ``1/nominal_rate`` or, without a
    rate, with the spacing of ``host_times``.
    """
    host = np.asarray(host_times if host_times is not None else [0.0] * len(lines), dtype=np.float64)
    sigs = [_signature(line) for line in lines]
    header_idx = next((i for i, s in enumerate(sigs) if s and s[0] == "header"), None)
    if header_idx is not None:
        _, delim, tokens = sigs[header_idx]
        data = [i for i, s in enumerate(sigs) if i > header_idx and s == ("num", delim, len(tokens))]
        if len(data) < min_lines:
            return None
        named = [canonical_name(t) for t in tokens]
        columns = tuple(n for n, _ in named)
        hint = next((h for n, h in named if n == TIME), None)
        unit = None
        if TIME in columns:
            j = columns.index(TIME)
            ticks = np.array([float(_split(lines[i], delim)[j]) for i in data])
            unit = _choose_time_unit(ticks, host[data], nominal_rate, hint)
        return LineFormat("delimited", columns, delim, unit, tuple(tokens))
    # The most frequent data signature, once it has min_lines members.
    counts: dict[tuple, list[int]] = {}
    for i, s in enumerate(sigs):
        if s and s[0] in ("num", "pairs"):
            counts.setdefault(s, []).append(i)
    for sig, idx in sorted(counts.items(), key=lambda kv: -len(kv[1])):
        if len(idx) < min_lines:
            return None
        if sig[0] == "pairs":
            named = [(k, *canonical_name(k)) for k in sig[1]]
            if not {"ax", "ay", "az"} <= {n for _, n, _ in named}:
                continue
            cols = tuple(f"{k}={n}" for k, n, _ in named if n)
            hint = next((h for _, n, h in named if n == TIME), None)
            unit = None
            if any(n == TIME for _, n, _ in named):
                key = next(k for k, n, _ in named if n == TIME)
                ticks = np.array([float(_pairs(lines[i])[key]) for i in idx])
                unit = _choose_time_unit(ticks, host[idx], nominal_rate, hint)
            return LineFormat("pairs", cols, None, unit)
        _, delim, n = sig
        columns = _columns_for_count(n)
        if columns is None:
            continue
        unit = None
        if columns[0] == TIME:
            ticks = np.array([float(_split(lines[i], delim)[0]) for i in idx])
            if not np.all(np.diff(ticks) > 0):
                continue  # first column is not a clock: no reading of this width fits
            unit = _choose_time_unit(ticks, host[idx], nominal_rate, None)
        return LineFormat("delimited", columns, delim, unit)
    return None


@dataclass
class Sample:
    """One parsed line: host receive time, device time in seconds (or None), values [6]
    in g and deg/s."""

    host_t: float
    device_t: float | None
    values: np.ndarray


class ImuLineParser:
    """Turns decoded text lines into samples; detects the format, converts units, counts bad
    lines. Pure (no I/O): feed it lines with their host receive times.

    Args:
        columns: fix the column layout instead of detecting it: names as in a header, e.g.
            ``["t", "ax", "ay", "az"]`` (``"_"`` ignores a column). With ``kind="pairs"`` they
            are the keys.
        delimiter: for ``columns``: ``","``, ``"\\t"``, ``";"``, ``" "`` (any whitespace) or
            None (taken from the first line with the right number of columns).
        time_unit: ``"auto"``, ``"s"``, ``"ms"`` or ``"us"``.
        accel_unit: ``"g"`` or ``"m/s2"``; gyro_unit: ``"deg/s"`` or ``"rad/s"``.
        nominal_rate: the device's sample rate, used to pick the time unit.
        detect_lines: consistent lines needed to detect the format.
        give_up_after: candidate lines kept for detection; older ones are counted as bad.
    """

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        delimiter: str | None = None,
        kind: str = "delimited",
        time_unit: str = "auto",
        accel_unit: str = "g",
        gyro_unit: str = "deg/s",
        nominal_rate: float | None = None,
        detect_lines: int = 5,
        give_up_after: int = 100,
    ) -> None:
        if time_unit != "auto" and time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be 'auto' or one of {sorted(TIME_UNITS)}, got {time_unit!r}")
        if accel_unit not in ACCEL_UNITS:
            raise ValueError(f"accel_unit must be one of {sorted(ACCEL_UNITS)}, got {accel_unit!r}")
        if gyro_unit not in GYRO_UNITS:
            raise ValueError(f"gyro_unit must be one of {sorted(GYRO_UNITS)}, got {gyro_unit!r}")
        if kind not in ("delimited", "pairs"):
            raise ValueError(f"kind must be 'delimited' or 'pairs', got {kind!r}")
        self.time_unit = time_unit
        self.nominal_rate = nominal_rate
        self.detect_lines = detect_lines
        self.give_up_after = give_up_after
        self._scale = np.array([ACCEL_UNITS[accel_unit]] * 3 + [GYRO_UNITS[gyro_unit]] * 3)
        self.format: LineFormat | None = None
        self._auto_delimiter = False
        if columns is not None:
            self.format = self._format_from_columns(list(columns), delimiter, kind)
        self._pending: list[tuple[str, float]] = []
        self._last_ticks: float | None = None
        self._wrap = 0
        self.bad_lines = 0
        self.last_bad: str | None = None
        self.undetected = False  # True once give_up_after lines came without a usable format

    def _format_from_columns(self, columns: list[str], delimiter: str | None, kind: str) -> LineFormat:
        named = [canonical_name(c) if c not in ("_", "") else (None, None) for c in columns]
        chans = [n for n, _ in named]
        if not {"ax", "ay", "az"} <= set(chans):
            raise ValueError(f"columns {columns!r}: need at least ax, ay, az (accel x, y, z)")
        hint = next((h for n, h in named if n == TIME), None)
        unit: float | None = None
        if TIME in chans:
            if self.time_unit != "auto":
                unit = TIME_UNITS[self.time_unit]
            elif hint:
                unit = TIME_UNITS[hint]
            else:
                raise ValueError(f"columns {columns!r} have a time column: give time_unit='us', 'ms' or 's'")
        if kind == "pairs":
            return LineFormat("pairs", tuple(f"{c}={n}" for c, n in zip(columns, chans) if n), None, unit)
        self._auto_delimiter = delimiter is None
        return LineFormat("delimited", tuple(chans), None if delimiter in (None, " ") else delimiter, unit)

    def feed(self, line: str, host_t: float) -> list[Sample]:
        """Parse one line (without its newline). Returns 0 or more samples (more when the
        line completed format detection and earlier lines are released)."""
        line = line.strip()
        if not line:
            return []
        if self.format is None:
            self._pending.append((line, host_t))
            lines = [p[0] for p in self._pending]
            fmt = detect_format(lines, [p[1] for p in self._pending], self.nominal_rate, self.detect_lines)
            if fmt is None:
                if len(self._pending) > self.give_up_after:
                    self.undetected = True
                    self._bad(self._pending.pop(0)[0], "no recognisable line format yet")
                return []
            if fmt.time_unit is not None and self.time_unit != "auto":
                fmt = LineFormat(fmt.kind, fmt.columns, fmt.delimiter, TIME_UNITS[self.time_unit], fmt.header)
            self.format, self.undetected = fmt, False
            pending, self._pending = self._pending, []
            out: list[Sample] = []
            for text, t in pending:
                out.extend(self._parse(text, t))
            return out
        return self._parse(line, host_t)

    def _parse(self, line: str, host_t: float) -> list[Sample]:
        fmt = self.format
        assert fmt is not None
        if self._auto_delimiter:
            delim = _guess_delimiter(line)
            if len(_split(line, delim)) != len(fmt.columns):
                self._bad(line, f"{len(_split(line, delim))} columns, expected {len(fmt.columns)}")
                return []
            fmt = self.format = LineFormat(fmt.kind, fmt.columns, delim, fmt.time_unit, fmt.header)
            self._auto_delimiter = False
        if fmt.header is not None and tuple(_split(line, fmt.delimiter)) == fmt.header:
            return []
        try:
            ticks, values = fmt.parse(line)
        except BadLine as e:
            self._bad(line, str(e))
            return []
        if ticks is not None and not math.isfinite(ticks):
            self._bad(line, "non-finite timestamp")
            return []
        present = ~np.isnan(values)
        if not np.all(np.isfinite(values[present])):
            self._bad(line, "non-finite value")
            return []
        if ticks is not None and fmt.time_unit in (1e-3, 1e-6):
            # 32-bit micros()/millis() counters wrap (every 71.6 min in µs): keep counting.
            if self._last_ticks is not None and ticks < self._last_ticks - 2**31:
                self._wrap += 2**32
            self._last_ticks = ticks
            ticks += self._wrap
        device_t = ticks * fmt.time_unit if (ticks is not None and fmt.time_unit) else None
        return [Sample(host_t, device_t, (values * self._scale))]

    def _bad(self, line: str, why: str) -> None:
        self.bad_lines += 1
        self.last_bad = f"{why}: {line[:60]!r}"

    def bad_bytes(self, why: str) -> None:
        """Count a line that never made it to text (over-long, undecodable)."""
        self.bad_lines += 1
        self.last_bad = why


class LineSplitter:
    """Splits a byte stream into lines; drops the first fragment after each reset and
    over-long lines (counted by the caller through ``on_bad``)."""

    def __init__(self, max_line_bytes: int = 512) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()
        self._skip_first = True
        self._overlong = False
        self.partial_dropped = 0

    def reset(self) -> None:
        """Forget buffered bytes; the next fragment up to a newline is dropped."""
        self._buf.clear()
        self._skip_first = True
        self._overlong = False

    def feed(self, data: bytes) -> list[bytes | None]:
        """Complete lines in ``data`` (None stands for an over-long line that was dropped)."""
        out: list[bytes | None] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                if not self._overlong:
                    self._buf += data[start:]
                    if len(self._buf) > self.max_line_bytes:
                        self._buf.clear()
                        self._overlong = True
                return out
            piece = data[start:nl]
            start = nl + 1
            if self._skip_first:
                self._skip_first = False
                self._buf.clear()
                self._overlong = False
                self.partial_dropped += 1
                continue
            if self._overlong or len(self._buf) + len(piece) > self.max_line_bytes:
                out.append(None)
            else:
                out.append(bytes(self._buf + piece))
            self._buf.clear()
            self._overlong = False


class SerialImuSource(SourceBase):
    """An IMU streaming text lines over a serial port (see the module docstring for formats).

    Args:
        port: device path (``/dev/ttyACM0``) or a pyserial URL (``loop://``, ``rfc2217://…``).
        baud: baud rate.
        name: stream name (default ``"imu"``).
        rate: nominal sample rate in Hz (None: taken from the device timestamps or the arrival
            rate during detection).
        columns, delimiter, kind, time_unit, accel_unit, gyro_unit: see :class:`ImuLineParser`.
        use_device_time: map the device timestamp column when there is one (else host time).
        emit_interval_s: samples are batched into one chunk per this interval (CPU).
        reconnect: reopen the port by itself after it disappears (path polled).
        max_line_bytes: longer lines are counted bad and dropped.
    """

    modality = "imu"

    def __init__(
        self,
        port: str,
        baud: int = 115200,
        *,
        name: str = "imu",
        rate: float | None = None,
        columns: Sequence[str] | None = None,
        delimiter: str | None = None,
        kind: str = "delimited",
        time_unit: str = "auto",
        accel_unit: str = "g",
        gyro_unit: str = "deg/s",
        use_device_time: bool = True,
        emit_interval_s: float = 0.02,
        reconnect: bool = True,
        reconnect_poll_s: float = 0.1,
        max_line_bytes: int = 512,
        late_threshold_s: float = 0.1,
    ) -> None:
        super().__init__(name)
        self.port = port
        self.baud = baud
        self.rate = rate
        self.use_device_time = use_device_time
        self.emit_interval_s = emit_interval_s
        self.reconnect = reconnect
        self.reconnect_poll_s = reconnect_poll_s
        self.late_threshold_s = late_threshold_s
        self._parser_args = dict(columns=columns, delimiter=delimiter, kind=kind, time_unit=time_unit,
                                 accel_unit=accel_unit, gyro_unit=gyro_unit, nominal_rate=rate)
        self.parser = ImuLineParser(**self._parser_args)  # validates arguments now
        self._splitter = LineSplitter(max_line_bytes)
        self._serial = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fit = ClockFit()
        self._smoother: RateSmoother | None = None
        self._meter = RateMeter()
        self._prev_device_t: float | None = None
        self._last_ts: float | None = None
        self._lost_at: float | None = None
        self._held: list[Sample] = []
        self._gap_total = 0.0
        with self._lock:
            self._health.nominal_rate = float(rate or 0.0)
            self._health.extra.update(port=port, axes=None, format=None, partial_lines_dropped=0,
                                      last_gap_s=0.0, gap_total_s=0.0, last_bad_line=None)

    # -- open / close -----------------------------------------------------------------
    def _is_url(self) -> bool:
        return "://" in self.port

    def _open(self):
        import serial  # pyserial

        try:
            if self._is_url():
                ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.05)
            else:
                ser = serial.Serial(self.port, baudrate=self.baud, timeout=0.05)
            ser.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as e:
            raise DeviceError(f"serial IMU {self.port}: cannot open at {self.baud} baud: {e}") from e
        self._splitter.reset()
        return ser

    def start(self) -> None:
        """Open the port (raises :class:`DeviceError` when it cannot) and start reading."""
        if self._thread is not None:
            return
        self._serial = self._open()
        with self._lock:
            self._health.connected = True
            self._health.error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"imu-serial:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and close the port. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._close()
        with self._lock:
            self._health.connected = False

    def _close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # closing a vanished port can raise anything; it is gone either way
                pass
            self._serial = None

    def write(self, data: bytes) -> None:
        """Send bytes to the device (e.g. a start command, or test data on ``loop://``)."""
        if self._serial is None:
            raise DeviceError(f"serial IMU {self.port}: not connected")
        self._serial.write(data)

    # -- capture thread ------------------------------------------------------------------
    def _run(self) -> None:
        import serial

        batch: list[Sample] = []
        batch_start = host_now()
        while not self._stop.is_set():
            if self._serial is None:
                self._flush(batch)
                batch = []
                if not self.reconnect:
                    return
                if not self._try_reconnect():
                    self._stop.wait(self.reconnect_poll_s)
                continue
            try:
                waiting = self._serial.in_waiting
                data = self._serial.read(waiting or 1)
            except (serial.SerialException, OSError) as e:
                self._flush(batch)  # before _lost: the gap starts after these samples
                batch = []
                self._lost(e)
                continue
            now = host_now()
            if data:
                for line in self._splitter.feed(data):
                    if line is None:
                        self.parser.bad_bytes(f"line longer than {self._splitter.max_line_bytes} bytes")
                        continue
                    try:
                        text = line.decode("ascii")
                    except UnicodeDecodeError:
                        self.parser.bad_bytes("undecodable bytes")
                        continue
                    if not batch:
                        batch_start = now
                    batch.extend(self.parser.feed(text, now))
            if batch and (not data or now - batch_start >= self.emit_interval_s):
                self._flush(batch)
                batch = []
            else:
                self._sync_counters()
        self._flush(batch)

    def _lost(self, err: Exception) -> None:
        self._close()
        with self._lock:
            self._health.connected = False
            self._health.error = f"serial IMU {self.port}: lost: {err}"
        self._lost_at = self._last_ts if self._last_ts is not None else host_now()
        if not self.reconnect:
            self._stop.set()

    def _try_reconnect(self) -> bool:
        if not self._is_url() and not os.path.exists(self.port):
            return False
        try:
            self._serial = self._open()
        except DeviceError as e:
            with self._lock:
                self._health.error = str(e)
            return False
        with self._lock:
            self._health.reconnects += 1
            self._health.connected = True
            self._health.error = None
        # The device may have restarted: its clock and sample count start over.
        self._smoother = None
        self._prev_device_t = None
        return True

    def _sync_counters(self) -> None:
        with self._lock:
            self._health.bad_lines = self.parser.bad_lines
            self._health.extra["partial_lines_dropped"] = self._splitter.partial_dropped
            self._health.extra["last_bad_line"] = self.parser.last_bad
            if self.parser.undetected:
                self._health.error = (f"serial IMU {self.port}: cannot recognise the line format; "
                                      "pass columns=[...] (e.g. ['t','ax','ay','az'])")

    def _timestamps(self, batch: list[Sample]) -> np.ndarray:
        host = np.array([s.host_t for s in batch])
        fmt = self.parser.format
        if self.use_device_time and batch[0].device_t is not None and all(s.device_t is not None for s in batch):
            dev = np.array([s.device_t for s in batch], dtype=np.float64)
            if self.rate is None and fmt is not None and len(dev) > 1 and self._health.nominal_rate == 0.0:
                inc = np.diff(dev)
                if np.median(inc) > 0:
                    self._health.nominal_rate = float(1.0 / np.median(inc))
            self._count_device_gaps(dev)
            return self._fit.stamp(dev, host)
        if self._smoother is None:
            self._smoother = RateSmoother(self._health.nominal_rate)
        out = np.empty(len(batch))
        # Lines completed by the same read share a receive time; stamp them as one group.
        bounds = np.flatnonzero(np.diff(host)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(batch)]):
            out[a:b] = self._smoother.stamp(int(b - a), float(host[b - 1]))
        return out

    def _count_device_gaps(self, dev: np.ndarray) -> None:
        if self._health.nominal_rate <= 0:
            return
        period = 1.0 / self._health.nominal_rate
        prev = self._prev_device_t
        full = dev if prev is None else np.r_[prev, dev]
        inc = np.diff(full)
        missing = np.round(inc[inc > 2.5 * period] / period) - 1
        with self._lock:
            self._health.dropped += int(missing.sum())
            self._health.gaps += int(missing.size)
        self._prev_device_t = float(dev[-1])

    def _flush(self, batch: list[Sample]) -> None:
        self._sync_counters()
        if self._held:
            batch = self._held + batch
            self._held = []
        if not batch:
            return
        if (self._smoother is None and self._health.nominal_rate == 0.0
                and not (self.use_device_time and batch[0].device_t is not None)):
            # No rate and no device clock: hold the first 0.5 s to measure the arrival rate,
            # so the smoother does not start from a guess.
            span = batch[-1].host_t - batch[0].host_t
            if span < 0.5 and not self._stop.is_set():
                self._held = batch
                return
            self._health.nominal_rate = (len(batch) - 1) / span if span > 0 else 100.0
        ts = self._timestamps(batch)
        if self._last_ts is not None:
            ts = np.maximum(ts, self._last_ts + 1e-6 * (1 + np.arange(ts.size)))
        data = np.stack([s.values for s in batch]).astype(np.float32)
        host = np.array([s.host_t for s in batch])
        fmt = self.parser.format
        with self._lock:
            h = self._health
            if self._lost_at is not None:
                gap = float(ts[0] - self._lost_at)
                h.gaps += 1
                self._gap_total += gap
                h.extra["last_gap_s"] = gap
                h.extra["gap_total_s"] = self._gap_total
                self._lost_at = None
            if self._smoother is not None and self._smoother.gaps:
                h.gaps += self._smoother.gaps
                self._gap_total += self._smoother.total_gap_s
                h.extra["last_gap_s"] = self._smoother.last_gap_s
                h.extra["gap_total_s"] = self._gap_total
                self._smoother.gaps, self._smoother.total_gap_s = 0, 0.0
            h.late += int(np.sum(host - ts > self.late_threshold_s))
            if self._smoother is not None and batch[0].device_t is None:
                h.clock_drift_ppm = self._smoother.drift_ppm
                h.clock_offset = 0.0
            elif self._fit.ready:
                h.clock_offset = self._fit.offset
                h.clock_drift_ppm = self._fit.drift_ppm
                h.extra["clock_resets"] = self._fit.resets
                h.extra["clock_outliers"] = self._fit.outliers
            if fmt is not None:
                h.extra["axes"] = fmt.axes
                h.extra["format"] = fmt.describe()
        self._meter.add(float(ts[-1]), len(ts))
        with self._lock:
            self._health.measured_rate = self._meter.rate()
        self._last_ts = float(ts[-1])
        self._emit(Chunk("imu", ts, data, self.name))
