"""Replay a recorded session (or any timestamped arrays) as live Sources.

``open_replay(folder, speed, loop)`` returns one :class:`ReplaySource` per recorded stream.
All sources of one session share a :class:`ReplayClock`: the first ``start()`` anchors the
session's first timestamp to the host clock, and every sample is then emitted at, and stamped
with, ``anchor + (t_recorded - t_first) / speed``, so the relative timing within and between
streams is preserved exactly (scaled by ``1 / speed``). Audio is emitted in its recorded
blocks, video one frame per chunk, IMU one sample per chunk; when the player falls behind it
merges whatever is due into one chunk rather than drifting.

``health().finished`` turns True after the last sample (never with ``loop``);
``health().extra["state"]`` is ``"idle"``, ``"playing"``, ``"finished"`` or ``"stopped"`` (for display);
``finished`` (a ``threading.Event``) is set when the last sample has been emitted, and
``on_finished`` callbacks run then. With ``loop=True`` the recording repeats forever, each pass
shifted by the session span plus one sample period, timestamps still increasing.
``source_time(t_host)`` maps a host time back onto the recording's own clock
(:meth:`ReplayClock.to_recorded`), so what is computed live can be placed in the recording.

The whole session is read into memory when opened.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

import numpy as np

from devices.base import Chunk, SourceBase, host_now


class ReplayClock:
    """Maps recorded time onto the host clock for all sources of one session."""

    def __init__(self, t_first: float, span: float, speed: float = 1.0, loop_gap: float = 0.0) -> None:
        if not speed > 0:
            raise ValueError(f"replay: speed must be > 0, got {speed}")
        self.t_first = float(t_first)
        self.speed = float(speed)
        self.loop_period = float(span) + float(loop_gap)
        self._anchor: float | None = None
        self._lock = threading.Lock()

    def anchor(self) -> float:
        """Host time at which recorded ``t_first`` plays; fixed by the first call."""
        with self._lock:
            if self._anchor is None:
                self._anchor = host_now()
            return self._anchor

    def to_host(self, t: np.ndarray, loop_index: int = 0) -> np.ndarray:
        """Recorded timestamps → host timestamps of their replay."""
        return self.anchor() + (np.asarray(t, np.float64) - self.t_first + loop_index * self.loop_period) / self.speed

    def to_recorded(self, t_host: float, loop: bool = False) -> float | None:
        """The inverse of :meth:`to_host`: the recorded time replayed at host time ``t_host``.

        With ``loop``, the time within the pass that plays then (passes are ``loop_period``
        apart). None before the replay started (the clock has no anchor yet).
        """
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return None
        elapsed = (float(t_host) - anchor) * self.speed
        if loop and self.loop_period > 0:
            elapsed %= self.loop_period
        return self.t_first + elapsed


class ReplaySource(SourceBase):
    """One recorded stream played back in real time (or ``speed`` × real time).

    Args:
        name: stream name (chunks carry it).
        modality: ``"video"``, ``"audio"`` or ``"imu"``.
        timestamps: recorded timestamps ``[n]`` (any clock, increasing).
        data: samples ``[n, ...]``.
        blocks: sample counts per emitted chunk (sum == n); default one sample per chunk.
        clock: shared :class:`ReplayClock`; default one for this stream alone.
        speed, loop: used when ``clock`` is None.
        nominal_rate: recorded rate (default estimated from the timestamps).
        video_kind: what a recorded video stream shows (``"colour"``/``"depth"``), when the
            session says; reported in the health row's ``extra`` as a camera does.
    """

    def __init__(
        self,
        name: str,
        modality: str,
        timestamps: np.ndarray,
        data: np.ndarray,
        *,
        blocks: list[int] | None = None,
        clock: ReplayClock | None = None,
        speed: float = 1.0,
        loop: bool = False,
        nominal_rate: float | None = None,
        video_kind: str | None = None,
    ) -> None:
        super().__init__(name)
        self.modality = modality
        self._ts = np.asarray(timestamps, np.float64)
        self._data = np.asarray(data)
        if len(self._ts) != len(self._data):
            raise ValueError(f"ReplaySource({name}): {len(self._ts)} timestamps for {len(self._data)} samples")
        sizes = list(blocks) if blocks is not None else [1] * len(self._ts)
        if sum(sizes) != len(self._ts) or any(s <= 0 for s in sizes):
            raise ValueError(f"ReplaySource({name}): blocks must be positive and sum to {len(self._ts)}")
        self._ends = np.cumsum(sizes, dtype=np.int64)  # exclusive end index of each block
        if nominal_rate is None and len(self._ts) > 1 and self._ts[-1] > self._ts[0]:
            nominal_rate = (len(self._ts) - 1) / (self._ts[-1] - self._ts[0])
        self.rate = float(nominal_rate or 0.0)
        if clock is None:
            t_first = float(self._ts[0]) if len(self._ts) else 0.0
            span = float(self._ts[-1] - self._ts[0]) if len(self._ts) else 0.0
            clock = ReplayClock(t_first, span, speed, 1.0 / self.rate if self.rate else 0.0)
        self.clock = clock
        self.loop = loop
        self.finished = threading.Event()
        self._on_finished: list[Callable[["ReplaySource"], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._health.nominal_rate = self.rate * clock.speed
        self._health.extra.update(state="idle", speed=clock.speed, loops=0)
        if video_kind:
            self._health.extra["video_kind"] = video_kind

    def source_time(self, t_host: float) -> float | None:
        """Host time ``t_host`` (e.g. a prediction's window end) on the recording's own clock: the
        session's timestamps, as its labelled segments use them. None before playing started."""
        return self.clock.to_recorded(t_host, self.loop)

    def on_finished(self, callback: Callable[["ReplaySource"], None]) -> None:
        """Call ``callback(source)`` once the last sample has been emitted (never with ``loop``)."""
        self._on_finished.append(callback)

    def start(self) -> None:
        """Begin playing (anchoring the shared clock if this is the session's first start)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self.finished.is_set() or self._stop.is_set():
            raise RuntimeError(f"ReplaySource({self.name}): already played; open the session again to replay it")
        self.clock.anchor()
        with self._lock:
            self._health.connected = True
            self._health.extra["state"] = "playing"
        self._thread = threading.Thread(target=self._run, name=f"replay:{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop playing. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            self._health.connected = False
            if self._health.extra.get("state") != "finished":
                self._health.extra["state"] = "stopped"

    def _run(self) -> None:
        n_blocks = len(self._ends)
        loop_index = 0
        while not self._stop.is_set() and n_blocks:
            host_ts = self.clock.to_host(self._ts, loop_index)
            due = host_ts[self._ends - 1]  # a block is delivered when its last sample is "captured"
            b = 0
            while b < n_blocks and not self._stop.is_set():
                wait = due[b] - host_now()
                if wait > 0 and self._stop.wait(wait):
                    return
                # emit every block already due, merged, so a late player catches up instead of drifting
                last = int(np.searchsorted(due, host_now(), side="right"))
                last = max(last, b + 1)
                lo = int(self._ends[b - 1]) if b else 0
                hi = int(self._ends[last - 1])
                self._emit(Chunk(self.modality, host_ts[lo:hi].copy(), self._data[lo:hi], self.name))
                b = last
            if not self.loop:
                break
            loop_index += 1
            with self._lock:
                self._health.extra["loops"] = loop_index
        if self._stop.is_set():
            return
        with self._lock:
            self._health.connected = False
            self._health.finished = True
            self._health.extra["state"] = "finished"
        self.finished.set()
        for callback in list(self._on_finished):
            callback(self)


def recorded_video_kind(settings: object) -> str | None:
    """The ``video_kind`` a session's device settings record (top level, or in the health
    ``extra`` that :func:`mmg_live.sources.device_settings` keeps), else None."""
    if not isinstance(settings, dict):
        return None
    extra = settings.get("extra")
    kind = settings.get("video_kind") or (extra.get("video_kind") if isinstance(extra, dict) else None)
    return kind if kind in ("colour", "depth") else None


def open_replay(folder: str | os.PathLike, speed: float = 1.0, loop: bool = False) -> list[ReplaySource]:
    """One :class:`ReplaySource` per stream of the session in ``folder``, sharing one clock.

    Raises ``SessionError`` (a RuntimeError) naming the folder when it is not a readable session.
    """
    from devices.session import SessionReader  # cv2/soundfile only when replaying sessions

    if not speed > 0:
        raise ValueError(f"open_replay({folder}): speed must be > 0, got {speed}")
    reader = SessionReader(folder)
    streams = {name: reader.read(name) for name in reader.streams}
    present = [s for s in streams.values() if len(s.timestamps)]
    if not present:
        raise ValueError(f"open_replay: session {folder} holds no samples")
    t_first = min(float(s.timestamps[0]) for s in present)
    t_last = max(float(s.timestamps[-1]) for s in present)
    periods = [1.0 / s.rate for s in present if s.rate]
    clock = ReplayClock(t_first, t_last - t_first, speed, max(periods) if periods else 0.0)
    sources = []
    for name, s in streams.items():
        if not len(s.timestamps):
            continue
        sources.append(
            ReplaySource(
                name,
                s.modality,
                s.timestamps,
                s.data,
                blocks=s.blocks,
                clock=clock,
                loop=loop,
                # the WAV rate is exact; other rates are estimated from the recorded timestamps
                nominal_rate=s.rate if s.modality == "audio" else None,
                video_kind=recorded_video_kind(reader.meta.get("devices", {}).get(name)),
            )
        )
    return sources
