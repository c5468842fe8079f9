"""Bounded, preallocated per-stream ring buffers on one synchronised time axis.

:class:`StreamBuffer` keeps the newest ``seconds`` of one stream in a ring allocated once;
``append`` copies a chunk into it (O(chunk), never reallocates) and ``window(t0, t1)`` copies
out the samples with ``t0 <= t < t1`` found by binary search over the ring's timestamps.
Timestamps in the ring are strictly increasing: samples not newer than the newest one held
(out of order or duplicates) are dropped and counted.

:class:`Synchronizer` holds the buffers of several streams on one time axis (per-stream
offsets applied at read); :mod:`mmg_live.live.windowing` reads the model's windows from them.
"""

from __future__ import annotations

import math
import threading
from typing import Callable, Iterable, Mapping

import numpy as np

from devices.base import Chunk

DEFAULT_MARGIN = 16


class StreamBuffer:
    """A preallocated ring holding the newest samples of one stream.

    Args:
        modality: ``"video"``, ``"audio"`` or ``"imu"``.
        seconds: how much time to hold at the nominal ``rate``.
        rate: nominal samples (frames) per second.
        sample_shape: shape of one sample, e.g. ``(H, W, 3)``, ``(1,)``, ``(6,)``.
        dtype: sample dtype.
        margin: extra slots beyond ``ceil(seconds * rate * 1.25)``.
        offset: seconds added to every timestamp at read time (a calibration's stream offset);
            ``window`` bounds are in offset-corrected time.
        name: stream name (defaults to the modality).

    Thread-safety: one or more writers and readers may call ``append``/``window`` concurrently;
    the lock is held only for index arithmetic, binary search and the copy.
    """

    def __init__(
        self,
        modality: str,
        seconds: float,
        rate: float,
        sample_shape: tuple[int, ...] | list[int],
        dtype: np.dtype | type | str,
        *,
        margin: int = DEFAULT_MARGIN,
        offset: float = 0.0,
        name: str | None = None,
    ) -> None:
        if seconds <= 0 or rate <= 0:
            raise ValueError(f"StreamBuffer({modality}): seconds and rate must be > 0, got {seconds}, {rate}")
        self.modality = modality
        self.name = name or modality
        self.seconds = float(seconds)
        self.rate = float(rate)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.dtype = np.dtype(dtype)
        self.capacity = int(math.ceil(self.seconds * self.rate * 1.25)) + int(margin)
        self.offset = float(offset)
        self._data = np.zeros((self.capacity, *self.sample_shape), dtype=self.dtype)
        self._ts = np.zeros(self.capacity, dtype=np.float64)
        self._lock = threading.Lock()
        self._end = 0  # total samples ever stored; next write slot is _end % capacity
        self._count = 0  # valid samples in the ring
        self._newest = -math.inf
        self.appended = 0  # samples stored
        self.copied = 0  # sample slots written (== appended: O(chunk) per append)
        self.dropped_out_of_order = 0
        self.dropped_overflow = 0  # samples of one chunk beyond capacity (oldest ones discarded)
        self.rejected = 0  # samples of chunks whose sample shape did not match
        self.error: str | None = None  # why the last chunk was rejected

    # ---- writing ----------------------------------------------------------------------------

    def append(self, chunk: Chunk) -> int:
        """Copy a chunk's samples into the ring; returns how many were stored. Usable as a Source callback.

        Never raises for bad data: a chunk whose sample shape does not match is skipped and
        counted in ``rejected`` with the reason in ``error``.
        """
        ts = np.asarray(chunk.timestamps, dtype=np.float64)
        data = np.asarray(chunk.data)
        if data.shape[1:] != self.sample_shape:
            # never raise into the capture thread that calls us: count, remember, skip
            with self._lock:
                self.rejected += len(ts)
                self.error = (f"StreamBuffer({self.name}): chunk samples have shape {data.shape[1:]}, "
                              f"expected {self.sample_shape}")
            return 0
        n = len(ts)
        if n == 0:
            return 0
        with self._lock:
            # keep only samples newer than everything before them (in the ring and in the chunk)
            prior = np.maximum.accumulate(np.concatenate(([self._newest], ts[:-1])))
            keep = ts > prior
            if not keep.all():
                self.dropped_out_of_order += int(n - keep.sum())
                ts = ts[keep]
                data = data[keep]
                n = len(ts)
                if n == 0:
                    return 0
            if n > self.capacity:
                self.dropped_overflow += n - self.capacity
                ts = ts[-self.capacity :]
                data = data[-self.capacity :]
                n = self.capacity
            start = self._end % self.capacity
            first = min(n, self.capacity - start)
            self._ts[start : start + first] = ts[:first]
            self._data[start : start + first] = data[:first]
            if first < n:
                self._ts[: n - first] = ts[first:]
                self._data[: n - first] = data[first:]
            self._end += n
            self._count = min(self.capacity, self._count + n)
            self._newest = float(ts[-1])
            self.appended += n
            self.copied += n
        return n

    def clear(self) -> None:
        """Forget every sample (the ring stays allocated)."""
        with self._lock:
            self._count = 0
            self._newest = -math.inf

    # ---- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def latest_time(self) -> float | None:
        """Offset-corrected timestamp of the newest sample, or None when empty."""
        with self._lock:
            if self._count == 0:
                return None
            return self._newest + self.offset

    def oldest_time(self) -> float | None:
        """Offset-corrected timestamp of the oldest sample held, or None when empty."""
        with self._lock:
            if self._count == 0:
                return None
            return float(self._ts[(self._end - self._count) % self.capacity]) + self.offset

    def window(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the samples with ``t0 <= t < t1`` (offset-corrected time): ``(data, timestamps)``."""
        return self._read(t0, t1, None)

    def window_select(self, t0: float, t1: float,
                      select: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`window`, but copies the data of only the samples ``select(timestamps)``
        picks (indices into the window's offset-corrected timestamps, called under the lock).

        Returns ``(data of the picked samples, every timestamp of the window)``: a video window
        of ~100 frames is read as the 16 its preprocessing samples, not copied whole.
        """
        return self._read(t0, t1, select)

    def _read(self, t0: float, t1: float,
              select: Callable[[np.ndarray], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        lo_t = t0 - self.offset
        hi_t = t1 - self.offset
        with self._lock:
            count = self._count
            if count == 0 or hi_t <= lo_t:
                return self._empty()
            cap = self.capacity
            start = (self._end - count) % cap
            # the ring in logical order is ts[start:start+len1] followed by ts[0:len2]
            len1 = min(count, cap - start)
            len2 = count - len1
            seg1 = self._ts[start : start + len1]
            seg2 = self._ts[:len2]

            def logical(t: float) -> int:
                i = int(np.searchsorted(seg1, t, side="left"))
                if i < len1 or len2 == 0:
                    return i
                return len1 + int(np.searchsorted(seg2, t, side="left"))

            a, b = logical(lo_t), logical(hi_t)
            if b <= a:
                return self._empty()
            idx_a = (start + a) % cap
            n = b - a
            if idx_a + n <= cap:
                ts = self._ts[idx_a : idx_a + n].copy()
            else:
                ts = np.concatenate((self._ts[idx_a:], self._ts[: n - (cap - idx_a)]))
            if self.offset:
                ts += self.offset
            if select is None:
                if idx_a + n <= cap:
                    data = self._data[idx_a : idx_a + n].copy()
                else:
                    data = np.concatenate((self._data[idx_a:], self._data[: n - (cap - idx_a)]))
            else:
                picked = np.asarray(select(ts), dtype=np.int64)
                if picked.size and (picked.min() < 0 or picked.max() >= n):
                    raise IndexError(f"StreamBuffer({self.name}).window_select: indices outside 0..{n - 1}")
                data = self._data[(idx_a + picked) % cap]  # fancy indexing copies
        return data, ts

    def latest(self, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """The newest ``seconds`` of samples: ``window(latest - seconds, latest]``."""
        t = self.latest_time()
        if t is None:
            return self._empty()
        return self.window(t - seconds, np.nextafter(t, math.inf))

    def stats(self) -> dict:
        """Counters: appended, copied, dropped_out_of_order, dropped_overflow, rejected, held, capacity."""
        with self._lock:
            return {
                "appended": self.appended,
                "copied": self.copied,
                "dropped_out_of_order": self.dropped_out_of_order,
                "dropped_overflow": self.dropped_overflow,
                "rejected": self.rejected,
                "held": self._count,
                "capacity": self.capacity,
            }

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((0, *self.sample_shape), self.dtype), np.zeros(0, np.float64)


class Synchronizer:
    """The buffers of one session's streams on one (offset-corrected) time axis.

    The live engine reads each modality's window from these buffers through
    :func:`mmg_live.live.windowing.read_window`.

    Args:
        buffers: ``{name: StreamBuffer}``, or an iterable of buffers keyed by their ``name``.
        offsets: optional ``{name: seconds}`` added to that stream's timestamps at read.
    """

    def __init__(
        self,
        buffers: Mapping[str, StreamBuffer] | Iterable[StreamBuffer],
        offsets: Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(buffers, Mapping):
            self.buffers: dict[str, StreamBuffer] = dict(buffers)
        else:
            self.buffers = {}
            for buf in buffers:
                if buf.name in self.buffers:
                    raise ValueError(f"Synchronizer: two buffers named {buf.name!r}")
                self.buffers[buf.name] = buf
        for name, offset in (offsets or {}).items():
            self.set_offset(name, offset)

    def set_offset(self, name: str, seconds: float) -> None:
        """Set the time offset (seconds, added at read) of one stream."""
        if name not in self.buffers:
            raise KeyError(f"Synchronizer: no stream {name!r}; streams are {sorted(self.buffers)}")
        self.buffers[name].offset = float(seconds)

    def latest_time(self) -> float | None:
        """Newest (offset-corrected) timestamp over all streams, or None when all are empty."""
        times = [t for t in (b.latest_time() for b in self.buffers.values()) if t is not None]
        return max(times) if times else None
