"""Camera capture with OpenCV: a device index, a video file / image sequence, or a URL.

Each frame is stamped with host-monotonic time right after it is grabbed and pushed as a
``[1, H, W, 3]`` uint8 RGB chunk (``[1, H, W, 1]`` with ``grayscale=True``). A file is paced
to its frame rate, so it behaves like a camera; it ends the source (or starts over with
``loop=True``). :meth:`CameraSource.latest_frame` gives the newest frame for a preview
without blocking (latest frame wins; nothing queues).
"""

from __future__ import annotations

import glob
import os
import re
import threading

import numpy as np

from devices.base import Chunk, DeviceError, SourceBase, host_now
from devices.clock import RateMeter

CameraSpec = int | str | os.PathLike


def _classify(spec: CameraSpec) -> tuple[str, int | str]:
    """``("index", n)``, ``("url", url)`` or ``("file", path)``."""
    if isinstance(spec, (int, np.integer)):
        return "index", int(spec)
    text = os.fspath(spec)
    if text.strip().isdigit():
        return "index", int(text)
    if "://" in text:
        return "url", text
    return "file", text


def _file_exists(path: str) -> bool:
    if os.path.isfile(path):
        return True
    # An image sequence such as frames/%04d.png: any file matching the pattern will do.
    if re.search(r"%0?\d*d", path):
        return bool(glob.glob(re.sub(r"%0?\d*d", "*", path)))
    return False


class CameraSource(SourceBase):
    """Frames from an OpenCV ``VideoCapture``.

    Args:
        spec: camera index (``0``), video file or image-sequence pattern
            (``frames/%04d.png``), or stream URL (``http://…/video.mjpg``, ``rtsp://…``).
        name: stream name.
        loop: start a file over at its end instead of stopping.
        grayscale: emit ``[1, H, W, 1]`` luminance instead of RGB.
        fps: frame rate to pace a file at (default: the file's own; 30 when it has none) and
            the nominal rate of a live camera (default: what the driver reports).
        pace: pace reading to ``fps`` (default: True for files, False for cameras/URLs,
            which deliver at their own rate).
        width, height: resolution to request from a live camera (the driver may refuse).
        reopen_s: a live camera that stops delivering is reopened every this many seconds.
        video_kind: what the frames show, ``"colour"`` (any ordinary camera or video file) or
            ``"depth"`` (a depth map rendered to 8 bit); in the health row's ``extra``, so the
            engine and a recording know it.
    """

    modality = "video"

    def __init__(
        self,
        spec: CameraSpec,
        *,
        name: str = "camera",
        loop: bool = False,
        grayscale: bool = False,
        fps: float | None = None,
        pace: bool | None = None,
        width: int | None = None,
        height: int | None = None,
        reopen_s: float = 1.0,
        video_kind: str = "colour",
    ) -> None:
        if video_kind not in ("colour", "depth"):
            raise ValueError(f"camera {spec}: video_kind must be 'colour' or 'depth', got {video_kind!r}")
        super().__init__(name)
        self.spec = spec
        self.kind, self._target = _classify(spec)
        self.loop = loop
        self.grayscale = grayscale
        self.fps = fps
        self.pace = (self.kind == "file") if pace is None else pace
        self.width, self.height = width, height
        self.reopen_s = reopen_s
        self._cap = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._latest: tuple[float, np.ndarray] | None = None
        self._latest_lock = threading.Lock()
        self._meter = RateMeter()
        with self._lock:
            self._health.extra.update(spec=str(spec), kind=self.kind, eof=False, loops=0, frames_read=0,
                                      video_kind=video_kind)

    @property
    def running(self) -> bool:
        """True while the capture thread runs (False after stop() or the end of a file)."""
        return self._thread is not None and self._thread.is_alive()

    def _open(self):
        import cv2

        if self.kind == "file" and not _file_exists(str(self._target)):
            raise DeviceError(f"camera {self.spec}: cannot open: no such file")
        cap = cv2.VideoCapture(self._target)
        if not cap.isOpened():
            cap.release()
            what = "no camera at this index, or it is in use" if self.kind == "index" else "OpenCV cannot read it"
            raise DeviceError(f"camera {self.spec}: cannot open ({what})")
        if self.kind == "index":
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    def start(self) -> None:
        """Open the camera (raises :class:`DeviceError` when it cannot) and start capturing."""
        if self.running:
            return
        import cv2

        self._cap = self._open()
        reported = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0.0 < reported < 1000.0):
            reported = 0.0
        rate = self.fps or reported or 30.0
        with self._lock:
            self._health.nominal_rate = rate
            self._health.connected = True
            self._health.error = None
            self._health.extra["eof"] = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(rate,), name=f"camera:{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing and release the camera. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=3.0)
        self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        with self._lock:
            self._health.connected = False

    def latest_frame(self) -> tuple[float, np.ndarray] | None:
        """The newest frame as ``(timestamp, [H, W, C] uint8)``, or None before the first.
        Never blocks on the capture."""
        with self._latest_lock:
            return self._latest

    # -- capture thread ------------------------------------------------------------------
    def _convert(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        if frame.ndim == 2:
            frame = frame[:, :, None]
        if self.grayscale:
            if frame.shape[2] == 1:
                return frame
            code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            return cv2.cvtColor(frame, code)[:, :, None]
        if frame.shape[2] == 1:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        code = cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(frame, code)

    def _read(self) -> tuple[float, np.ndarray | None]:
        cap = self._cap
        if not cap.grab():
            return host_now(), None
        t = host_now()  # stamped at grab, before the (slower) decode
        ok, frame = cap.retrieve()
        return t, (frame if ok else None)

    def _rewind(self) -> bool:
        import cv2

        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        self._cap.release()
        try:
            self._cap = self._open()
        except DeviceError:
            return False
        return True

    def _run(self, rate: float) -> None:
        period = 1.0 / rate
        due = host_now()
        last_t: float | None = None
        failures = 0
        while not self._stop.is_set():
            if self.pace:
                delay = due - host_now()
                if delay > 0 and self._stop.wait(delay):
                    break
            t, frame = self._read()
            if frame is None:
                if self.kind == "file":
                    if self.loop and self._rewind():
                        with self._lock:
                            self._health.extra["loops"] += 1
                        continue
                    with self._lock:
                        self._health.extra["eof"] = True
                        self._health.connected = False
                    return
                failures += 1
                if failures >= 3:
                    self._reopen_live()
                    failures = 0
                continue
            failures = 0
            if self.pace:
                due += period
                behind = host_now() - due
                if behind > period:  # fell behind (slow subscriber): skip frames like a camera
                    skip = int(behind // period)
                    for _ in range(skip):
                        self._cap.grab()
                    due += skip * period
                    with self._lock:
                        self._health.dropped += skip
            self._deliver(t, frame, last_t, period)
            last_t = t

    def _reopen_live(self) -> None:
        with self._lock:
            self._health.connected = False
            self._health.error = f"camera {self.spec}: no frames; reopening"
        while not self._stop.wait(self.reopen_s):
            self._cap.release()
            try:
                self._cap = self._open()
            except DeviceError as e:
                with self._lock:
                    self._health.error = str(e)
                continue
            with self._lock:
                self._health.reconnects += 1
                self._health.connected = True
                self._health.error = None
            return

    def _deliver(self, t: float, frame: np.ndarray, last_t: float | None, period: float) -> None:
        image = np.ascontiguousarray(self._convert(frame))
        with self._latest_lock:
            self._latest = (t, image)
        self._meter.add(t)
        with self._lock:
            h = self._health
            h.extra["frames_read"] += 1
            h.measured_rate = self._meter.rate()
            if last_t is not None and not self.pace:
                missed = int(round((t - last_t) / period)) - 1
                if missed > 0:  # a live camera skipped frames
                    h.dropped += missed
                    h.gaps += int(missed >= 5)
                    h.late += 1
        self._emit(Chunk("video", np.array([t]), image[None], self.name))
