"""Host clock helpers and device→host time mapping.

Every timestamp in mmg-live is host monotonic seconds (:func:`host_now`). Devices with their
own clock (an IMU's ``micros()`` column, PortAudio's stream time) are mapped onto it with
:class:`ClockFit`; streams without device timestamps get theirs from :class:`RateSmoother`,
which smooths host receive times against the nominal sample rate.

Both rest on one observation: transport (USB, serial, scheduler) only ever *adds* latency,
so ``host_receive - device_time`` is the true offset plus a non-negative delay. The lower
envelope of that difference over recent samples tracks the true offset; a straight line
through the per-bucket minima gives offset and drift.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from devices.base import host_now

__all__ = ["host_now", "ClockFit", "RateSmoother", "RateMeter"]


class ClockFit:
    """Online mapping ``host ≈ device + offset + drift * (device - ref)``, robust to jitter.

    Observations ``(device_t, host_t)`` are grouped into buckets of ``bucket_s`` device
    seconds; each bucket keeps its minimum ``host_t - device_t`` (the sample with the least
    transport delay). Over the buckets of the last ``window_s`` seconds, the drift is the
    median of the slopes between pairs of minima (Theil-Sen) and the line is placed under
    every minimum, touching the lowest. Bursts of delayed samples and steps in latency do not
    tilt it the way a least-squares fit would.

    An observation that contradicts the fit by more than ``reset_threshold_s`` is ignored as
    an outlier (a corrupted timestamp) unless ``reset_after`` in a row do: then the device
    clock jumped (reboot) and the fit restarts from them.

    Args:
        window_s: how much history the fit uses (device seconds).
        bucket_s: bucket length (device seconds); several samples per bucket are needed.
        reset_threshold_s: |residual| above which an observation contradicts the fit.
        reset_after: consecutive contradicting observations that restart the fit.
    """

    def __init__(
        self, window_s: float = 60.0, bucket_s: float = 0.5, reset_threshold_s: float = 1.0, reset_after: int = 3
    ) -> None:
        if window_s <= 0 or bucket_s <= 0 or window_s < 2 * bucket_s:
            raise ValueError(f"ClockFit: need window_s >= 2*bucket_s > 0, got window_s={window_s}, bucket_s={bucket_s}")
        self.window_s = float(window_s)
        self.bucket_s = float(bucket_s)
        self.reset_threshold_s = float(reset_threshold_s)
        self.reset_after = max(1, int(reset_after))
        self.resets = 0
        self.outliers = 0
        self._clear()

    def _clear(self) -> None:
        self._ref: float | None = None
        # Completed buckets: (bucket index, device time of the minimum, minimum of host-device).
        self._buckets: deque[tuple[int, float, float]] = deque()
        self._cur: list[float] | None = None  # [bucket index, device t at min, min diff]
        self._offset = 0.0  # host - device at device time == ref
        self._slope = 0.0
        self._last_device: float | None = None
        self._suspect: list[tuple[float, float]] = []  # trailing run of contradicting observations

    @property
    def ready(self) -> bool:
        """True once at least one observation was made."""
        return self._ref is not None

    @property
    def drift_ppm(self) -> float:
        """Device clock rate error in parts per million (host seconds per device second − 1)."""
        return self._slope * 1e6

    @property
    def offset(self) -> float:
        """``host - device`` in seconds at the newest observed device time."""
        if self._ref is None or self._last_device is None:
            return 0.0
        return self._offset + self._slope * (self._last_device - self._ref)

    def reset(self) -> None:
        """Forget every observation (e.g. the device was reconnected and its clock restarted)."""
        self._clear()

    def update(self, device_t: float | np.ndarray, host_t: float | np.ndarray) -> None:
        """Add observations: ``host_t`` is when each device time was *received* on the host."""
        dev = np.atleast_1d(np.asarray(device_t, dtype=np.float64))
        host = np.atleast_1d(np.asarray(host_t, dtype=np.float64))
        if dev.shape != host.shape:
            raise ValueError(f"ClockFit.update: {dev.size} device times for {host.size} host times")
        if dev.size == 0:
            return
        if self._ref is not None:
            bad = np.abs((host - dev) - self._predict_diff(dev)) > self.reset_threshold_s
            if not bad.any():
                self._suspect = []
            else:
                good = np.flatnonzero(~bad)
                tail = int(good[-1]) + 1 if good.size else 0
                if good.size:
                    self._suspect = []  # an agreeing observation ends any earlier run
                self._suspect.extend(zip(dev[tail:].tolist(), host[tail:].tolist()))
                if len(self._suspect) >= self.reset_after:
                    suspect = np.asarray(self._suspect)
                    self.resets += 1
                    self._clear()
                    dev, host = suspect[:, 0], suspect[:, 1]
                else:
                    self.outliers += int(bad[:tail].sum())
                    dev, host = dev[~bad], host[~bad]
                    if dev.size == 0:
                        return
        if self._ref is None:
            self._ref = float(dev[0])
            self._offset = float(host[0] - dev[0])
        diff = host - dev
        idx = np.floor((dev - self._ref) / self.bucket_s).astype(np.int64)
        changed = False
        for b in np.unique(idx):
            sel = idx == b
            j = int(np.argmin(np.where(sel, diff, np.inf)))
            changed |= self._add_min(int(b), float(dev[j]), float(diff[j]))
        self._last_device = float(dev[-1]) if self._last_device is None else max(self._last_device, float(dev[-1]))
        if changed:
            self._fit()

    def _add_min(self, b: int, d: float, diff: float) -> bool:
        cur = self._cur
        if cur is None or b > cur[0]:
            if cur is not None:
                self._buckets.append((int(cur[0]), cur[1], cur[2]))
                oldest = b - int(self.window_s / self.bucket_s)
                while self._buckets and self._buckets[0][0] < oldest:
                    self._buckets.popleft()
            self._cur = [b, d, diff]
            return True
        if b == cur[0]:
            if diff < cur[2]:
                cur[1], cur[2] = d, diff
                return True
            return False
        # An older bucket (out-of-order data): fold it in if it is still in the window.
        for k, (bb, _, m) in enumerate(self._buckets):
            if bb == b:
                if diff < m:
                    self._buckets[k] = (bb, d, diff)
                    return True
                return False
        return False

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        pts = list(self._buckets)
        if self._cur is not None:
            pts.append((int(self._cur[0]), self._cur[1], self._cur[2]))
        arr = np.asarray([(p[1], p[2]) for p in pts], dtype=np.float64)
        return arr[:, 0] - (self._ref or 0.0), arr[:, 1]

    def _fit(self) -> None:
        x, y = self._points()
        if x.size < 3 or (x.max() - x.min()) < 2 * self.bucket_s:
            # Too short to see drift: the offset is the lowest difference seen.
            self._slope = 0.0
            self._offset = float(y.min())
            return
        # Drift: the median of the slopes between every pair of bucket minima (Theil-Sen),
        # which a burst of late buckets or a step in latency does not tilt for long. Offset:
        # the line under every minimum, touching the lowest (transport only adds delay).
        i, j = np.triu_indices(x.size, k=1)
        dx = x[j] - x[i]
        ok = dx > 0.5 * self.bucket_s
        slope = float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0
        self._slope, self._offset = slope, float(np.min(y - slope * x))

    def _predict_diff(self, device_t: np.ndarray) -> np.ndarray:
        return self._offset + self._slope * (device_t - (self._ref or 0.0))

    def to_host(self, device_t: float | np.ndarray) -> np.ndarray:
        """Map device times (seconds) to host-monotonic seconds with the current fit."""
        dev = np.asarray(device_t, dtype=np.float64)
        if self._ref is None:
            raise RuntimeError("ClockFit.to_host: no observation yet")
        return dev + self._predict_diff(dev)

    def stamp(self, device_t: float | np.ndarray, host_t: float | np.ndarray) -> np.ndarray:
        """``update`` then ``to_host``, never later than the receive time (a sample cannot
        have been acquired after it arrived)."""
        self.update(device_t, host_t)
        mapped = np.atleast_1d(self.to_host(device_t))
        return np.minimum(mapped, np.atleast_1d(np.asarray(host_t, dtype=np.float64)))


class RateSmoother:
    """Timestamps for a stream with no device clock: host receive times smoothed against
    the nominal rate.

    Sample ``k`` of a run is given device time ``k / nominal_rate`` and mapped with a
    :class:`ClockFit` (whose drift absorbs a device running a little fast or slow). A sample
    arriving ``gap_threshold_s`` later than the fit predicts starts a new run: the gap is
    counted (``gaps``, ``last_gap_s``) and the smoother re-anchors on it.

    Args:
        nominal_rate: samples per second the device claims.
        gap_threshold_s: lateness that counts as a gap (default: max(0.1 s, 10 periods)).
        window_s, bucket_s: passed to :class:`ClockFit`.
        max_slew: when the fit moves, stamps walk onto it by at most this fraction of a
            period per sample instead of jumping (faster, up to 0.9, where a sample would
            otherwise be stamped after it arrived); gaps still jump.
    """

    def __init__(
        self,
        nominal_rate: float,
        gap_threshold_s: float | None = None,
        window_s: float = 30.0,
        bucket_s: float = 0.5,
        max_slew: float = 0.1,
    ) -> None:
        if not (nominal_rate > 0 and math.isfinite(nominal_rate)):
            raise ValueError(f"RateSmoother: nominal_rate must be a positive number, got {nominal_rate!r}")
        self.period = 1.0 / float(nominal_rate)
        self.gap_threshold_s = gap_threshold_s if gap_threshold_s is not None else max(0.1, 10 * self.period)
        self._fit = ClockFit(window_s=window_s, bucket_s=max(bucket_s, 4 * self.period), reset_threshold_s=math.inf)
        self._k = 0
        self._last_out: float | None = None
        self._jump = False
        self.max_slew = max_slew
        self.gaps = 0
        self.last_gap_s = 0.0
        self.total_gap_s = 0.0

    @property
    def drift_ppm(self) -> float:
        """How much faster (+) or slower (−) than nominal the stream runs, in ppm of its period."""
        return self._fit.drift_ppm

    def restart(self) -> None:
        """Start a new run at the next sample (the caller knows samples were lost); the gap
        is not counted here."""
        self._fit.reset()
        self._k = 0
        self._jump = True

    def stamp(self, n: int, host_t: float) -> np.ndarray:
        """Timestamps for ``n`` samples whose last one was received at ``host_t``."""
        if n <= 0:
            return np.empty(0, dtype=np.float64)
        last_dev = (self._k + n - 1) * self.period
        if self._fit.ready:
            predicted = float(self._fit.to_host(last_dev))
            late = host_t - predicted
            if late > self.gap_threshold_s:
                self.gaps += 1
                self.last_gap_s = late
                self.total_gap_s += late
                self.restart()
                last_dev = (n - 1) * self.period
        self._fit.update(last_dev, host_t)
        dev = (self._k + np.arange(n)) * self.period
        ts = np.minimum(self._fit.to_host(dev), host_t)
        if self._last_out is not None:
            if not self._jump:
                # A refit moves the line: walk onto it by at most max_slew of a period per
                # sample instead of jumping, so spacing stays within (1 ± max_slew) periods.
                e = ts[0] - (self._last_out + self.period)
                step = self.max_slew * self.period
                if e < 0:
                    # ...faster when needed to keep the last sample before its receive time.
                    slack = host_t - ts[-1]
                    step = min(max(step, (-e - slack) / n), 0.9 * self.period)
                ts = ts - np.sign(e) * np.maximum(0.0, abs(e) - step * (1 + np.arange(n)))
                ts = np.minimum(ts, host_t)
            ts = np.maximum(ts, self._last_out + 1e-6 * (1 + np.arange(n)))
        self._jump = False
        self._k += n
        self._last_out = float(ts[-1])
        return ts


class RateMeter:
    """Measured sample rate over a sliding window of host time."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._count = 0

    def add(self, t: float, n: int = 1) -> None:
        """Record ``n`` samples with newest timestamp ``t``."""
        self._events.append((t, n))
        self._count += n
        while self._events and self._events[0][0] < t - self.window_s:
            self._count -= self._events.popleft()[1]

    def rate(self) -> float:
        """Samples per second over the window (0 until two events span some time)."""
        if len(self._events) < 2:
            return 0.0
        span = self._events[-1][0] - self._events[0][0]
        if span <= 0:
            return 0.0
        return (self._count - self._events[0][1]) / span
