"""Session recording: write every stream incrementally to a session folder, and read it back.

Session folder format (``format_version`` 1)::

    session.json              metadata, rewritten atomically (tmp + os.replace) at every flush
    video/000000.mkv ...      video stream "video": short self-contained segments (see below)
    video_timestamps.csv      frame,segment,host_time  (one row per frame)
    audio.wav                 PCM 16-bit, written incrementally with soundfile
    audio_timestamps.csv      first_sample,count,first_time,last_time  (one row per block)
    imu.csv                   host_time,ax,ay,az,gx,gy,gz  (one row per sample)

File stems are the modality for the first stream of each modality (so a session with one
camera, one microphone and one IMU has exactly the names above); further streams of the same
modality use ``<modality>_<stream name>``. ``session.json["streams"]`` names every stream's
files, so readers never guess.

Crash safety ("after ``kill -9``, everything up to the last flush is readable"): a flush
happens at least every ``flush_interval`` seconds (0.5 s by default, from a background thread,
so it also happens when no chunk arrives). A flush writes the CSV and WAV buffers to the OS,
rewrites ``session.json`` atomically and **closes the current video segment**. An MP4/MKV
file is only complete once its writer is released (an MP4 without its ``moov`` atom is
unreadable), so video is NOT one ``video.mp4`` but a folder of segments, each a complete file
holding at most one flush interval of frames; only the segment open at the moment of a crash
can be lost or partial. The default codec is FFV1 in Matroska (``.mkv``): lossless, so pixels
round-trip exactly, and grayscale frames (``[H, W, 1]``) are stored as gray and read back as
``[H, W, 1]``. ``video_codec="mp4v"`` (``.mp4``) or ``"mjpg"`` (``.avi``) trade exactness for
size. The WAV header is finalised only on close; :class:`SessionReader` recovers the PCM data
of an unfinalised WAV from the file size. Truncated CSV tails (a partial last line) are
dropped and reported.

Timestamps are host-monotonic seconds, exactly as the chunks carried them (written with 17
significant digits, so they round-trip bit-exactly). Audio samples inside a block get times
interpolated linearly between the block's first and last timestamp.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import queue
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import soundfile as sf

from devices.base import Chunk, host_now

FORMAT_NAME = "mmg-live-session"
FORMAT_VERSION = 1
SESSION_JSON = "session.json"

# codec name -> (fourcc, segment file extension)
VIDEO_CODECS: dict[str, tuple[str, str]] = {
    "ffv1": ("FFV1", ".mkv"),
    "mp4v": ("mp4v", ".mp4"),
    "mjpg": ("MJPG", ".avi"),
}
IMU_COLUMNS = ("ax", "ay", "az", "gx", "gy", "gz")


class SessionError(RuntimeError):
    """A session folder could not be written or read; the message names the file and why."""


def stream_key(chunk: Chunk) -> str:
    """The name a chunk's stream is recorded under: ``chunk.stream``, else its modality."""
    return chunk.stream or chunk.modality


def _fmt_float(dtype: np.dtype) -> str:
    if dtype == np.float32 or dtype == np.float16:
        return "%.9g"
    if np.issubdtype(dtype, np.floating):
        return "%.17g"
    return "%d"


def _atomic_write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


class _ImuWriter(_StreamWriter):
    def __init__(self, folder: Path, name: str, stem: str, settings: dict) -> None:
        super().__init__(folder, name, stem, "imu", settings)
        self.path = folder / f"{stem}.csv"
        self.file = open(self.path, "w", encoding="utf-8", newline="")
        self.columns: tuple[str, ...] | None = None
        self.fmt = ""

    def _write(self, chunk: Chunk) -> bool:
        data = chunk.data.reshape(len(chunk.data), -1)
        if self.columns is None:
            nch = data.shape[1]
            self.columns = IMU_COLUMNS if nch == 6 else tuple(f"c{i}" for i in range(nch))
            self.file.write("host_time," + ",".join(self.columns) + "\n")
            self.shape = [nch]
            self.dtype = str(data.dtype)
            self.fmt = ",".join(["%.17g"] + [_fmt_float(data.dtype)] * nch) + "\n"
        elif data.shape[1] != len(self.columns):
            raise SessionError(
                f"SessionWriter: imu stream {self.name!r} changed from {len(self.columns)} to {data.shape[1]} channels"
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
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        devices: dict[str, dict] | None = None,
        calibration: dict | None = None,
        *,
        video_codec: str = "ffv1",
        flush_interval: float = 0.5,
    ) -> None:
        if video_codec not in VIDEO_CODECS:
            raise ValueError(f"SessionWriter: unknown video codec {video_codec!r}; expected one of {sorted(VIDEO_CODECS)}")
        if not 0 < flush_interval <= 1.0:
            raise ValueError(f"SessionWriter: flush_interval must be in (0, 1] s, got {flush_interval}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._json_path = self.folder / SESSION_JSON
        if self._json_path.exists():
            raise FileExistsError(f"SessionWriter: {self._json_path} exists; refusing to overwrite a recording")
        self.devices = {k: dict(v) for k, v in (devices or {}).items()}
        self.calibration = calibration
        self.video_codec = video_codec
        self.flush_interval = float(flush_interval)
        self.start_wall = _dt.datetime.now(_dt.timezone.utc).isoformat()
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
            writer = _ImuWriter(self.folder, name, stem, settings)
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
            }
        _atomic_write_json(self._json_path, payload)


# --------------------------------------------------------------------------------------------
# SessionReader
# --------------------------------------------------------------------------------------------


@dataclass
class StreamData:
    """One recorded stream read back.

    Attributes:
        name: stream name.
        modality: ``"video"``, ``"audio"`` or ``"imu"``.
        timestamps: float64 ``[n]`` host-monotonic seconds.
        data: ``[n, ...]`` (video uint8 ``[n, H, W, C]``, audio float32 ``[n, ch]``, imu ``[n, 6]``).
        rate: nominal rate (audio sample rate, video fps, imu estimated), may be None.
        blocks: sample counts of the recorded chunks when known (audio), else None.
    """

    name: str
    modality: str
    timestamps: np.ndarray
    data: np.ndarray
    rate: float | None = None
    blocks: list[int] | None = None

    def chunks(self) -> Iterator[Chunk]:
        """The stream as Chunks: recorded blocks for audio, one per frame for video, one per sample for imu."""
        if self.blocks is not None:
            sizes = self.blocks
        else:
            sizes = [1] * len(self.timestamps)
        start = 0
        for size in sizes:
            yield Chunk(self.modality, self.timestamps[start : start + size], self.data[start : start + size], self.name)
            start += size


def _read_csv_lines(path: Path) -> tuple[list[str], list[str], bool]:
    """Header fields, complete data lines, and whether a partial last line was dropped."""
    text = path.read_text(encoding="utf-8", errors="replace")
    truncated = bool(text) and not text.endswith("\n")
    lines = text.split("\n")
    if truncated:
        lines = lines[:-1]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return [], [], truncated
    return lines[0].split(","), lines[1:], truncated


def _parse_rows(path: Path, lines: list[str], ncols: int) -> tuple[np.ndarray, int]:
    """Parse CSV data lines into float64 ``[n, ncols]``; returns (rows, bad line count)."""
    rows = []
    bad = 0
    for ln in lines:
        parts = ln.split(",")
        if len(parts) != ncols:
            bad += 1
            continue
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            bad += 1
    arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), ncols)
    return arr, bad


def _wav_pcm16_tail(path: Path) -> tuple[np.ndarray, int, int] | None:
    """Raw PCM-16 samples of a WAV whose header was never finalised: (frames[n, ch], channels, rate)."""
    raw = path.read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    channels = rate = None
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, rate = struct.unpack("<HHI", raw[body : body + 8])
        elif cid == b"data":
            if channels is None:
                return None
            payload = raw[body:]  # the size field may be 0 or stale: trust the file length
            frame_bytes = 2 * channels
            n = len(payload) // frame_bytes
            pcm = np.frombuffer(payload[: n * frame_bytes], dtype="<i2").reshape(n, channels)
            return (pcm.astype(np.float32) / 32768.0), channels, rate
        pos = body + size + (size & 1)
    return None


class SessionReader:
    """Read a session folder back, tolerating the truncated tail a crash leaves.

    ``read(stream)`` returns a :class:`StreamData`; ``report`` (computed by reading every
    stream) gives per-stream ``samples`` and any truncation found, e.g.
    ``{"imu": {"samples": 120, "truncated": True, "notes": ["imu.csv: partial last line dropped"]}}``.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        path = self.folder / SESSION_JSON
        try:
            self.meta: dict = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SessionError(f"SessionReader: {path} not found (not a session folder)") from None
        except json.JSONDecodeError as exc:
            raise SessionError(f"SessionReader: {path} is not valid JSON: {exc}") from None
        if self.meta.get("format") != FORMAT_NAME:
            raise SessionError(f"SessionReader: {path} is not an {FORMAT_NAME} file")
        if int(self.meta.get("format_version", 0)) > FORMAT_VERSION:
            raise SessionError(
                f"SessionReader: {path} has format_version {self.meta['format_version']}, "
                f"newer than this reader ({FORMAT_VERSION})"
            )
        self._cache: dict[str, StreamData] = {}
        self._report: dict[str, dict] = {}

    @property
    def streams(self) -> dict[str, dict]:
        """Per-stream metadata from session.json."""
        return dict(self.meta.get("streams", {}))

    @property
    def segments(self) -> list[dict]:
        """Labelled segments ``[{"label", "t0", "t1"}]``."""
        return list(self.meta.get("segments", []))

    @property
    def counters(self) -> dict[str, dict]:
        """Per-stream counters (bad_lines, dropped, ...)."""
        return dict(self.meta.get("counters", {}))

    @property
    def closed(self) -> bool:
        """Whether the writer finished cleanly (False after a crash)."""
        return bool(self.meta.get("closed", False))

    @property
    def report(self) -> dict[str, dict]:
        """Per-stream ``{"samples", "truncated", "notes"}`` of what was recovered (reads all streams)."""
        for name in self.streams:
            self.read(name)
        return {k: dict(v) for k, v in self._report.items()}

    def read(self, stream: str) -> StreamData:
        """Read one stream completely (cached)."""
        if stream in self._cache:
            return self._cache[stream]
        info = self.streams.get(stream)
        if info is None:
            raise SessionError(f"SessionReader: {self.folder} has no stream {stream!r}; it has {sorted(self.streams)}")
        notes: list[str] = []
        modality = info.get("modality")
        if modality == "video":
            data = self._read_video(stream, info, notes)
        elif modality == "audio":
            data = self._read_audio(stream, info, notes)
        elif modality == "imu":
            data = self._read_imu(stream, info, notes)
        else:
            raise SessionError(f"SessionReader: stream {stream!r} in {self.folder} has unknown modality {modality!r}")
        expected = info.get("samples")
        self._report[stream] = {
            "samples": len(data.timestamps),
            "recorded_in_json": expected,
            "truncated": bool(notes),
            "notes": notes,
        }
        self._cache[stream] = data
        return data

    def read_range(self, stream: str, t0: float, t1: float) -> StreamData:
        """The samples of one stream with ``t0 <= t <= t1`` (not cached).

        Video decodes only the segments overlapping the range, so a labelled segment of a long
        session is cheap to read; audio and IMU are read whole (cached) and sliced.
        """
        info = self.streams.get(stream)
        if info is None:
            raise SessionError(f"SessionReader: {self.folder} has no stream {stream!r}; it has {sorted(self.streams)}")
        if info.get("modality") == "video" and stream not in self._cache:
            return self._read_video(stream, info, [], t0, t1)
        full = self.read(stream)
        mask = (full.timestamps >= t0) & (full.timestamps <= t1)
        return StreamData(full.name, full.modality, full.timestamps[mask], full.data[mask], full.rate)

    def chunks(self, stream: str) -> Iterator[Chunk]:
        """One stream as Chunks (see :meth:`StreamData.chunks`)."""
        return self.read(stream).chunks()

    # ---- per modality -----------------------------------------------------------------------

    def _read_imu(self, name: str, info: dict, notes: list[str]) -> StreamData:
        path = self.folder / info["files"]["csv"]
        dtype = np.dtype(info.get("dtype") or "float32")
        if not path.exists():
            notes.append(f"{path.name}: missing")
            return StreamData(name, "imu", np.zeros(0), np.zeros((0, 6), dtype), None)
        header, lines, partial = _read_csv_lines(path)
        if partial:
            notes.append(f"{path.name}: partial last line dropped")
        ncols = len(header) if header else 1 + int((info.get("shape") or [6])[0])
        rows, bad = _parse_rows(path, lines, ncols)
        if bad:
            notes.append(f"{path.name}: {bad} malformed lines skipped")
        ts = rows[:, 0].copy()
        data = rows[:, 1:].astype(dtype)
        rate = None
        if len(ts) > 1 and ts[-1] > ts[0]:
            rate = (len(ts) - 1) / (ts[-1] - ts[0])
        return StreamData(name, "imu", ts, data, rate)

    def _read_audio(self, name: str, info: dict, notes: list[str]) -> StreamData:
        files = info["files"]
        wav = self.folder / files["wav"]
        rate = info.get("rate")
        channels = int((info.get("shape") or [1])[0])
        header, lines, partial = _read_csv_lines(self.folder / files["timestamps"])
        if partial:
            notes.append(f"{files['timestamps']}: partial last line dropped")
        rows, bad = _parse_rows(self.folder / files["timestamps"], lines, 4)
        if bad:
            notes.append(f"{files['timestamps']}: {bad} malformed lines skipped")
        samples = np.zeros((0, channels), np.float32)
        if wav.exists():
            try:
                samples, sr = sf.read(wav, dtype="float32", always_2d=True)
                rate = rate or sr
            except (RuntimeError, sf.LibsndfileError):
                samples = np.zeros((0, channels), np.float32)
            on_disk = _wav_pcm16_tail(wav)
            if on_disk is not None and len(on_disk[0]) > len(samples):
                notes.append(f"{wav.name}: header not finalised; recovered {len(on_disk[0])} frames from the data")
                samples, channels, rate = on_disk[0], on_disk[1], rate or on_disk[2]
        else:
            notes.append(f"{wav.name}: missing")
        ts_parts: list[np.ndarray] = []
        blocks: list[int] = []
        total = 0
        for first, count, t0, t1 in rows:
            first, count = int(first), int(count)
            if first != total:
                notes.append(f"{files['timestamps']}: block at sample {first} does not follow {total}; stopped there")
                break
            avail = min(count, len(samples) - total)
            if avail <= 0:
                break
            times = np.linspace(t0, t1, count) if count > 1 else np.array([t0])
            ts_parts.append(times[:avail])
            blocks.append(avail)
            total += avail
            if avail < count:
                notes.append(f"{wav.name}: last block cut at {avail} of {count} samples")
                break
        if total < len(samples):
            notes.append(f"{wav.name}: {len(samples) - total} trailing samples have no timestamps; dropped")
        ts = np.concatenate(ts_parts) if ts_parts else np.zeros(0)
        return StreamData(name, "audio", ts, samples[:total], float(rate) if rate else None, blocks)

    def _read_video(
        self, name: str, info: dict, notes: list[str], t0: float = -np.inf, t1: float = np.inf
    ) -> StreamData:
        files = info["files"]
        ts_name = files["timestamps"]
        header, lines, partial = _read_csv_lines(self.folder / ts_name)
        if partial:
            notes.append(f"{ts_name}: partial last line dropped")
        rows, bad = _parse_rows(self.folder / ts_name, lines, 3)
        if bad:
            notes.append(f"{ts_name}: {bad} malformed lines skipped")
        shape = info.get("shape")
        channels = int(shape[2]) if shape else 3
        ext = info.get("segment_ext", ".mkv")
        frames: list[np.ndarray] = []
        times: list[np.ndarray] = []
        seg_ids = rows[:, 1].astype(int) if len(rows) else np.zeros(0, int)
        for seg in sorted(set(seg_ids.tolist())):
            seg_ts = rows[seg_ids == seg, 2]
            if seg_ts[-1] < t0 or seg_ts[0] > t1:
                continue  # a time-range read decodes only the segments it needs
            path = self.folder / files["segments_dir"] / f"{seg:06d}{ext}"
            decoded = self._decode(path, channels, len(seg_ts))
            if len(decoded) < len(seg_ts):
                notes.append(f"{path.relative_to(self.folder)}: {len(decoded)} of {len(seg_ts)} frames readable")
            n = min(len(decoded), len(seg_ts))
            keep = [k for k in range(n) if t0 <= seg_ts[k] <= t1]
            frames.extend(decoded[k] for k in keep)
            times.append(seg_ts[keep])
        if frames:
            data = np.stack(frames)
        else:
            h, w = (shape[0], shape[1]) if shape else (0, 0)
            data = np.zeros((0, h, w, channels), np.uint8)
        ts = np.concatenate(times) if times else np.zeros(0)
        return StreamData(name, "video", ts, data, info.get("fps"))

    @staticmethod
    def _decode(path: Path, channels: int, limit: int) -> list[np.ndarray]:
        if not path.exists():
            return []
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        out: list[np.ndarray] = []
        try:
            while len(out) < limit:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                if frame.ndim == 2:
                    frame = frame[..., None]
                out.append(frame[..., :1].copy() if channels == 1 else frame)
        finally:
            cap.release()
        return out
