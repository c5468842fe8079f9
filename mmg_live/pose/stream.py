"""A ``pose`` stream derived from a camera: landmarks of the newest frame, in a thread of its own.

:class:`PoseStream` subscribes to a camera source, keeps only the newest frame (a frame that
arrives while the estimator is busy replaces the waiting one and is counted as skipped), runs
:class:`~mmg_live.pose.estimator.PoseEstimator` at most ``rate_hz`` times a second and emits one
``pose`` chunk per estimated frame: ``[1, 33, 4]`` world landmarks + visibility (NaN when no
person was found) stamped with the host time of the frame they came from. It is a source like
any device, so the engine buffers it, a session records it and the GUI shows its health.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from devices.base import Chunk, DeviceError, Health, Source, SourceBase, host_now
from mmg_live.pose.estimator import PoseEstimator, PoseSettings, PoseUnavailable, import_mediapipe_pose

#: Default estimation rate: the lite pose spec's model rate is 15 Hz.
DEFAULT_POSE_RATE_HZ = 15.0


class PoseStream(SourceBase):
    """Pose landmarks derived from ``camera``'s frames.

    Args:
        camera: a started-or-not video source; this stream subscribes to it at construction.
        rate_hz: the most estimates a second (frames in between are skipped).
        settings: estimator settings.
        name: stream name (default ``"<camera name>-pose"``).
        estimator_factory: builds the estimator inside the worker thread (tests pass a fake one
            to count calls; the app always uses :class:`PoseEstimator`).
    """

    modality = "pose"

    def __init__(self, camera: Source, rate_hz: float = DEFAULT_POSE_RATE_HZ, settings: PoseSettings | None = None,
                 name: str | None = None,
                 estimator_factory: Callable[[PoseSettings], PoseEstimator] | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"pose rate must be positive, got {rate_hz}")
        super().__init__(name or f"{camera.name}-pose")
        self.camera = camera
        self.rate_hz = float(rate_hz)
        self.settings = settings or PoseSettings()
        self._factory = estimator_factory or PoseEstimator
        self._cond = threading.Condition()
        self._pending: tuple[float, np.ndarray] | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self._skipped = 0
        self._found = deque(maxlen=60)
        self._compute_s = deque(maxlen=60)
        self._emitted_times = deque(maxlen=60)
        self._latest: tuple[float, np.ndarray] | None = None
        self._health.nominal_rate = self.rate_hz
        camera.subscribe(self._on_frames)

    # ---- capture side ------------------------------------------------------------------------

    def _on_frames(self, chunk: Chunk) -> None:
        if chunk.modality != "video" or len(chunk.timestamps) == 0:
            return
        with self._cond:
            if not self._running:
                return
            self._skipped += len(chunk.timestamps) - 1 + (self._pending is not None)
            self._pending = (float(chunk.timestamps[-1]), chunk.data[-1])
            self._cond.notify()

    # ---- Source ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the estimator thread; :class:`DeviceError` when MediaPipe cannot be imported."""
        try:
            import_mediapipe_pose()
        except PoseUnavailable as exc:
            with self._lock:
                self._health.error = str(exc)
            raise DeviceError(f"pose stream {self.name}: {exc}") from exc
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name=f"pose-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop estimating (idempotent); the camera is not stopped."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._thread = None

    def health(self) -> Health:
        """Rate, skipped frames (``dropped``), share of frames with a person and compute time."""
        h = super().health()
        cam = self.camera.health()
        with self._cond:
            times = list(self._emitted_times)
            h.dropped = self._skipped
            found = list(self._found)
            compute = sorted(self._compute_s)
            h.connected = self._running and cam.connected
            h.finished = cam.finished and self._pending is None and self._running
        if len(times) > 1 and times[-1] > times[0]:
            h.measured_rate = (len(times) - 1) / (times[-1] - times[0])
        h.extra = {
            "person_found": float(np.mean(found)) if found else None,
            "compute_ms_p50": 1000.0 * compute[len(compute) // 2] if compute else None,
            "skipped": h.dropped,
        }
        return h

    def latest(self) -> tuple[float, np.ndarray] | None:
        """``(frame time, [33, 3] image landmarks)`` of the newest estimate, for drawing the skeleton."""
        with self._cond:
            return self._latest

    # ---- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            estimator = self._factory(self.settings)
        except Exception as exc:  # a broken model file: say so in the health row and stop
            with self._lock:
                self._health.error = f"pose estimator failed to start: {type(exc).__name__}: {exc}"
            with self._cond:
                self._running = False
            return
        period = 1.0 / self.rate_hz
        next_run = 0.0
        try:
            while True:
                with self._cond:
                    while self._running and self._pending is None:
                        self._cond.wait(timeout=0.5)
                    if not self._running:
                        return
                wait = next_run - time.monotonic()
                if wait > 0:  # rate limit: newer frames may replace the pending one meanwhile
                    time.sleep(wait)
                with self._cond:
                    if not self._running or self._pending is None:
                        continue
                    t_frame, frame = self._pending
                    self._pending = None
                # a fixed grid, so waiting for a frame or a slow estimate does not lower the
                # average rate; after a long stall it restarts instead of catching up in a burst
                next_run = max(next_run + period, time.monotonic() - period)
                started = time.perf_counter()
                try:
                    world, image = estimator.process(frame)
                except Exception as exc:  # one bad frame must not end the stream
                    with self._lock:
                        self._health.error = f"pose: {type(exc).__name__}: {exc}"
                    continue
                elapsed = time.perf_counter() - started
                found = bool(np.isfinite(world[0, 0]))
                with self._cond:
                    self._found.append(found)
                    self._compute_s.append(elapsed)
                    self._emitted_times.append(host_now())
                    if found:
                        self._latest = (t_frame, image)
                self._emit(Chunk("pose", np.array([t_frame]), world[None], self.name))
        finally:
            estimator.close()
