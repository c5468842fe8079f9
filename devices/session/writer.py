"""Writing a session folder: :class:`SessionWriter` records chunks of any number of streams
incrementally, one stream writer per stream (video segments, WAV + block times, IMU CSV).
See :mod:`devices.session` for the folder format and its crash-safety guarantees."""

from __future__ import annotations

import datetime
import json
import math
import os
import queue
import re
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile as sf

from devices.base import Chunk, host_now
from devices.session.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMU_COLUMNS,
    SESSION_JSON,
    SESSION_KEYS,
    VIDEO_CODECS,
    SessionError,
    stream_key,
)
from mmg_common import atomic_write_json, one_line


def _fmt_float(dtype: np.dtype) -> str:
    if dtype == np.float32 or dtype == np.float16:
        return "%.9g"
    if np.issubdtype(dtype, np.floating):
        return "%.17g"
    return "%d"


def _json_metadata(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``fields`` as plain JSON values; ValueError naming the key that the format owns,
    is not a non-empty string, or whose value JSON cannot hold."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"SessionWriter metadata: keys must be non-empty strings, got {key!r}")
        if key in SESSION_KEYS:
            raise ValueError(
                f"SessionWriter metadata: key {key!r} is one of the keys session.json's format writes "
                f"({', '.join(sorted(SESSION_KEYS))}); use another name"
            )
        try:
            out[key] = json.loads(json.dumps(value))  # a copy the caller cannot change under the writer
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"SessionWriter metadata: key {key!r} holds a value JSON cannot store ({one_line(exc)})"
            ) from None
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "stream"


# --------------------------------------------------------------------------------------------
# Writers, one per modality. Only the SessionWriter's worker thread touches them.
# --------------------------------------------------------------------------------------------


class _StreamWriter:
    def __init__(self, folder: Path, name: str, stem: str, modality: str, settings: dict) -> None:
        self.folder = folder
        self.name = name
        self.stem = stem
        self.modality = modality
        self.settings = settings
        self.samples = 0
        self.chunks = 0
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.shape: list[int] | None = None
        self.dtype: str | None = None
        self.rejected = 0
        self.error: str | None = None

    def write(self, chunk: Chunk) -> None:
        n = len(chunk.timestamps)
        if n == 0:
            return
        if not self._write(chunk):
            return
        self.samples += n
        self.chunks += 1
        if self.first_time is None:
            self.first_time = float(chunk.timestamps[0])
        self.last_time = float(chunk.timestamps[-1])

    def _write(self, chunk: Chunk) -> bool:
        """Write a non-empty chunk (True); raise SessionError for a chunk the stream cannot take."""
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def meta(self) -> dict:
        return {
            "modality": self.modality,
            "samples": self.samples,
            "chunks": self.chunks,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "shape": self.shape,
            "dtype": self.dtype,
            "rejected": self.rejected,
            "error": self.error,
        }


class _VideoWriter(_StreamWriter):
    def __init__(self, folder: Path, name: str, stem: str, settings: dict, codec: str) -> None:
        super().__init__(folder, name, stem, "video", settings)
        if codec not in VIDEO_CODECS:
            raise SessionError(f"SessionWriter: unknown video codec {codec!r}; expected one of {sorted(VIDEO_CODECS)}")
        self.codec = codec
        self.fourcc, self.ext = VIDEO_CODECS[codec]
        self.fps = float(settings.get("fps") or settings.get("rate") or 30.0)
        (folder / stem).mkdir(exist_ok=True)
        self.ts_path = folder / f"{stem}_timestamps.csv"
        self.ts_file = open(self.ts_path, "w", encoding="utf-8", newline="")
        self.ts_file.write("frame,segment,host_time\n")
        self.segment = -1
        self.segments: list[str] = []
        self.writer: cv2.VideoWriter | None = None
        self.frame_shape: tuple[int, int, int] | None = None

    def _open_segment(self, h: int, w: int, c: int) -> None:
        self.segment += 1
        rel = f"{self.stem}/{self.segment:06d}{self.ext}"
        path = self.folder / rel
        writer = cv2.VideoWriter(
            str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h), isColor=(c == 3)
        )
        if not writer.isOpened():
            raise SessionError(f"SessionWriter: cannot open video segment {path} ({self.codec}, {w}x{h}x{c})")
        self.writer = writer
        self.segments.append(rel)

    def _write(self, chunk: Chunk) -> bool:
        data = chunk.data
        if data.ndim == 3:  # [n, H, W] -> gray
            data = data[..., None]
        if data.ndim != 4 or data.shape[-1] not in (1, 3) or data.dtype != np.uint8:
            raise SessionError(
                f"SessionWriter: video stream {self.name!r} got frames {data.dtype}{list(data.shape)}; "
                "expected uint8 [n, H, W, 1 or 3]"
            )
        shape = tuple(int(s) for s in data.shape[1:])
        if self.frame_shape is None:
            self.frame_shape = shape  # type: ignore[assignment]
            self.shape = list(shape)
            self.dtype = "uint8"
        elif shape != self.frame_shape:  # one stream keeps one frame size
            raise SessionError(
                f"SessionWriter: video stream {self.name!r} changed frame size from "
                f"{list(self.frame_shape)} to {list(shape)}; those frames were skipped"
            )
        h, w, c = shape
        rows = []
        for i in range(len(data)):
            if self.writer is None:
                self._open_segment(h, w, c)
            frame = data[i] if c == 3 else data[i, :, :, 0]
            self.writer.write(np.ascontiguousarray(frame))  # type: ignore[union-attr]
            rows.append(f"{self.samples + i},{self.segment},{float(chunk.timestamps[i]):.17g}\n")
        self.ts_file.write("".join(rows))
        return True

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.release()  # closes the segment: it becomes a complete, readable file
            self.writer = None
        self.ts_file.flush()

    def close(self) -> None:
        self.flush()
        os.fsync(self.ts_file.fileno())
        self.ts_file.close()

    def meta(self) -> dict:
        m = super().meta()
        m.update(
            files={"segments_dir": self.stem, "timestamps": self.ts_path.name},
            codec=self.codec,
            segment_ext=self.ext,
            fps=self.fps,
            segments=len(self.segments),
        )
        return m


class _AudioWriter(_StreamWriter):
    def __init__(self, folder: Path, name: str, stem: str, settings: dict) -> None:
        super().__init__(folder, name, stem, "audio", settings)
        self.path = folder / f"{stem}.wav"
        self.ts_path = folder / f"{stem}_timestamps.csv"
        self.rate: int | None = None
        rate = settings.get("rate") or settings.get("sample_rate") or settings.get("samplerate")
        if rate:
            self.rate = int(round(float(rate)))
        self.sf: sf.SoundFile | None = None
        self.ts_file = open(self.ts_path, "w", encoding="utf-8", newline="")
        self.ts_file.write("first_sample,count,first_time,last_time\n")

    def _open(self, chunk: Chunk) -> None:
        if self.rate is None:
            ts = chunk.timestamps
            if len(ts) < 2 or ts[-1] <= ts[0]:
                raise SessionError(
                    f"SessionWriter: audio stream {self.name!r} has no 'rate' in its device settings "
                    "and its first block is too short to estimate one"
                )
            self.rate = int(round((len(ts) - 1) / (ts[-1] - ts[0])))
        channels = 1 if chunk.data.ndim == 1 else int(chunk.data.shape[1])
        self.sf = sf.SoundFile(self.path, "w", samplerate=self.rate, channels=channels, format="WAV", subtype="PCM_16")
        self.shape = [channels]
        self.dtype = "float32"

    def _write(self, chunk: Chunk) -> bool:
        if self.sf is None:
            self._open(chunk)
        data = chunk.data.reshape(len(chunk.data), -1)
        if data.shape[1] != self.shape[0]:  # type: ignore[index]
            raise SessionError(
                f"SessionWriter: audio stream {self.name!r} changed from {self.shape[0]} to "  # type: ignore[index]
                f"{data.shape[1]} channels"
            )
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
        # libsndfile wraps (not clips) out-of-range floats when converting to PCM.
        self.sf.write(np.clip(data, -1.0, 32767 / 32768).astype(np.float32))  # type: ignore[union-attr]
        ts = chunk.timestamps
        self.ts_file.write(f"{self.samples},{len(ts)},{float(ts[0]):.17g},{float(ts[-1]):.17g}\n")
        return True

    def flush(self) -> None:
        if self.sf is not None:
            self.sf.flush()
        self.ts_file.flush()

    def close(self) -> None:
        if self.sf is not None:
            self.sf.close()
        self.ts_file.flush()
        os.fsync(self.ts_file.fileno())
        self.ts_file.close()

    def meta(self) -> dict:
        m = super().meta()
        m.update(files={"wav": self.path.name, "timestamps": self.ts_path.name}, rate=self.rate, subtype="PCM_16")
        return m


class _TableWriter(_StreamWriter):
    """Samples of a fixed shape as CSV rows (``imu``: 6 named columns; ``pose``: 33 × 4 values
    per frame as ``j{i}_x, j{i}_y, j{i}_z, j{i}_v``), ``host_time`` first."""

    def __init__(self, folder: Path, name: str, stem: str, modality: str, settings: dict) -> None:
        super().__init__(folder, name, stem, modality, settings)
        self.path = folder / f"{stem}.csv"
        self.file = open(self.path, "w", encoding="utf-8", newline="")
        self.columns: tuple[str, ...] | None = None
        self.fmt = ""

    def _write(self, chunk: Chunk) -> bool:
        data = chunk.data.reshape(len(chunk.data), -1)
        if self.columns is None:
            nch = data.shape[1]
            if self.modality == "pose" and chunk.data.ndim == 3:
                joints, values = chunk.data.shape[1:]
                self.columns = tuple(f"j{j}_{a}" for j in range(joints) for a in "xyzv"[:values])
            else:
                self.columns = IMU_COLUMNS if nch == 6 else tuple(f"c{i}" for i in range(nch))
            self.file.write("host_time," + ",".join(self.columns) + "\n")
            self.shape = list(chunk.data.shape[1:])
            self.dtype = str(data.dtype)
            self.fmt = ",".join(["%.17g"] + [_fmt_float(data.dtype)] * nch) + "\n"
        elif data.shape[1] != len(self.columns):
            raise SessionError(
                f"SessionWriter: {self.modality} stream {self.name!r} changed from {len(self.columns)} to "
                f"{data.shape[1]} channels"
            )
        lines = [self.fmt % (float(t), *row) for t, row in zip(chunk.timestamps, data.tolist())]
        self.file.write("".join(lines))
        return True

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def meta(self) -> dict:
        m = super().meta()
        m.update(files={"csv": self.path.name}, columns=list(self.columns or ()))
        return m


# --------------------------------------------------------------------------------------------
# SessionWriter
# --------------------------------------------------------------------------------------------


class SessionWriter:
    """Record chunks from any number of streams into a session folder, incrementally.

    ``write`` only enqueues; a worker thread writes the files and flushes them (and rewrites
    ``session.json``) at least every ``flush_interval`` seconds, so a capture thread calling
    ``write`` is never blocked by encoding, and a crash loses at most the last interval.

    Args:
        folder: the session folder; created if needed. Refuses a folder that already holds a
            ``session.json`` (never overwrites a recording).
        devices: per-stream device description and settings, keyed by stream name (the
            chunk's ``stream``, or its modality when empty), e.g.
            ``{"audio": {"device": "default", "rate": 16000}}``. Audio uses ``rate``; video uses
            ``fps`` (container metadata only: the per-frame timestamps are the truth).
        calibration: the calibration profile applied while recording, or None.
        video_codec: ``"ffv1"`` (lossless, default), ``"mp4v"`` or ``"mjpg"``.
        flush_interval: seconds between flushes (at most 1 s is allowed).
        metadata: extra top-level ``session.json`` keys (e.g. ``{"subject": 3, "source":
            "utd-mhad"}``), written with every flush; JSON values only, and no key the format
            itself writes (:data:`~devices.session.format.SESSION_KEYS`). Add keys known only
            later with :meth:`update_metadata`.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        devices: dict[str, dict] | None = None,
        calibration: dict | None = None,
        *,
        video_codec: str = "ffv1",
        flush_interval: float = 0.5,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if video_codec not in VIDEO_CODECS:
            raise ValueError(
                f"SessionWriter: unknown video codec {video_codec!r}; expected one of {sorted(VIDEO_CODECS)}"
            )
        if not 0 < flush_interval <= 1.0:
            raise ValueError(f"SessionWriter: flush_interval must be in (0, 1] s, got {flush_interval}")
        self._metadata = _json_metadata(metadata or {})
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._json_path = self.folder / SESSION_JSON
        if self._json_path.exists():
            raise FileExistsError(f"SessionWriter: {self._json_path} exists; refusing to overwrite a recording")
        self.devices = {k: dict(v) for k, v in (devices or {}).items()}
        self.calibration = calibration
        self.video_codec = video_codec
        self.flush_interval = float(flush_interval)
        self.start_wall = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.start_host = host_now()
        self._writers: dict[str, _StreamWriter] = {}
        self._counters: dict[str, dict[str, Any]] = {}
        self._segments: list[dict] = []
        self._meta_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._closed = False
        self._flushes = 0
        self.last_flush = self.start_host
        self._write_session_json(closed=False)
        self._thread = threading.Thread(target=self._run, name=f"SessionWriter({self.folder.name})", daemon=True)
        self._thread.start()

    # ---- public API -------------------------------------------------------------------------

    def write(self, chunk: Chunk) -> bool:
        """Queue a chunk for writing (thread-safe, returns at once). Usable as a Source callback.

        Never raises, so a recording problem cannot break the capture thread that calls it:
        returns False when the writer is closed or has failed (see :attr:`error`). A chunk the
        stream cannot take (wrong dtype/shape/modality) is skipped and counted in the stream's
        ``rejected`` count with its ``error`` message (``stats()`` and session.json).
        """
        if self._closed or self._error is not None:
            return False
        self._queue.put(("chunk", chunk))
        return True

    def add_segment(self, label: str, t0: float, t1: float) -> None:
        """Add a labelled time segment ``[t0, t1]`` (host-monotonic seconds) to the session."""
        if not label or not isinstance(label, str):
            raise ValueError(f"SessionWriter.add_segment: label must be a non-empty string, got {label!r}")
        if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
            raise ValueError(f"SessionWriter.add_segment({label!r}): need finite t0 <= t1, got t0={t0}, t1={t1}")
        with self._meta_lock:
            self._segments.append({"label": label, "t0": float(t0), "t1": float(t1)})

    def update_counters(self, stream: str, **counters: Any) -> None:
        """Set per-stream counters (e.g. ``bad_lines=3, dropped=0``) stored in session.json."""
        with self._meta_lock:
            self._counters.setdefault(stream, {}).update(counters)

    def update_device(self, stream: str, **settings: Any) -> None:
        """Add or change a stream's device settings in session.json (e.g. ``opened=False, error=...``)."""
        with self._meta_lock:
            self.devices.setdefault(stream, {}).update(settings)

    def update_metadata(self, **fields: Any) -> None:
        """Add or change extra top-level ``session.json`` keys (see ``metadata`` in the class
        docstring); written at the next flush and on close. Raises ValueError for a key the
        format owns or a value JSON cannot hold, SessionError once the writer is closed."""
        checked = _json_metadata(fields)
        if self._closed:
            raise SessionError(f"SessionWriter: {self.folder} is closed; metadata {sorted(fields)} not written")
        with self._meta_lock:
            self._metadata.update(checked)

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued so far to disk and rewrite session.json; waits until done."""
        self._check()
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(timeout):
            raise SessionError(f"SessionWriter: flush of {self.folder} did not finish within {timeout} s")
        self._check()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, finalise every file and mark the session closed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(("close", None))
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SessionError(f"SessionWriter: closing {self.folder} did not finish within {timeout} s")
        if self._error is not None:
            raise SessionError(f"SessionWriter: writing {self.folder} failed: {self._error}") from self._error

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the writer thread, if any."""
        return self._error

    def stats(self) -> dict[str, dict]:
        """Per-stream samples/chunks written so far (as of the last processed chunk)."""
        with self._meta_lock:
            return {name: w.meta() for name, w in self._writers.items()}

    def __enter__(self) -> "SessionWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise SessionError(f"SessionWriter: writing {self.folder} failed: {self._error}") from self._error
        if self._closed:
            raise SessionError(f"SessionWriter: {self.folder} is closed")

    def _writer_for(self, chunk: Chunk) -> _StreamWriter:
        name = stream_key(chunk)
        writer = self._writers.get(name)
        if writer is not None:
            if writer.modality != chunk.modality:
                raise SessionError(
                    f"SessionWriter: stream {name!r} is {writer.modality} but got a {chunk.modality} chunk"
                )
            return writer
        taken = {w.stem for w in self._writers.values()}
        stem = chunk.modality if chunk.modality not in taken else f"{chunk.modality}_{_safe_name(name)}"
        while stem in taken:
            stem += "_"
        settings = self.devices.get(name, {})
        if chunk.modality == "video":
            writer = _VideoWriter(self.folder, name, stem, settings, self.video_codec)
        elif chunk.modality == "audio":
            writer = _AudioWriter(self.folder, name, stem, settings)
        else:
            writer = _TableWriter(self.folder, name, stem, chunk.modality, settings)
        with self._meta_lock:
            self._writers[name] = writer
        return writer

    def _run(self) -> None:
        try:
            while True:
                wait = max(0.0, self.last_flush + self.flush_interval - host_now())
                try:
                    kind, payload = self._queue.get(timeout=wait)
                except queue.Empty:
                    self._flush_all()
                    continue
                if kind == "chunk":
                    self._write_chunk(payload)
                    if host_now() - self.last_flush >= self.flush_interval:
                        self._flush_all()
                elif kind == "flush":
                    self._flush_all()
                    payload.set()
                elif kind == "close":
                    for writer in self._writers.values():
                        writer.close()
                    self._write_session_json(closed=True)
                    return
        except BaseException as exc:  # keep what was written; report on the next call
            self._error = exc
            for writer in list(self._writers.values()):
                try:
                    writer.flush()
                except Exception:
                    pass
            while True:  # release anyone waiting on a flush
                try:
                    kind, payload = self._queue.get_nowait()
                except queue.Empty:
                    break
                if kind == "flush":
                    payload.set()

    def _write_chunk(self, chunk: Chunk) -> None:
        try:
            writer = self._writer_for(chunk)
        except SessionError as exc:  # e.g. an audio chunk on a stream recorded as video
            with self._meta_lock:
                c = self._counters.setdefault(stream_key(chunk), {})
                c["rejected"] = c.get("rejected", 0) + len(chunk.timestamps)
                c["error"] = str(exc)
            return
        try:
            writer.write(chunk)
        except SessionError as exc:  # bad chunk for this stream: skip it, keep recording
            writer.rejected += len(chunk.timestamps)
            writer.error = str(exc)

    def _flush_all(self) -> None:
        for writer in self._writers.values():
            writer.flush()
        self._flushes += 1
        self._write_session_json(closed=False)
        self.last_flush = host_now()

    def _write_session_json(self, closed: bool) -> None:
        with self._meta_lock:
            payload = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "wall_clock_start": self.start_wall,
                "host_monotonic_start": self.start_host,
                "last_flush_host": host_now(),
                "closed": closed,
                "devices": json.loads(json.dumps(self.devices, default=str)),
                "calibration": self.calibration,
                "streams": {name: w.meta() for name, w in self._writers.items()},
                "counters": {k: dict(v) for k, v in self._counters.items()},
                "segments": list(self._segments),
                **self._metadata,
            }
        atomic_write_json(self._json_path, payload)


