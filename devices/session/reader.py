"""Reading a session folder back: :class:`SessionReader` returns each stream as
:class:`~devices.session.format.StreamData` and recovers what a crash left (a partial CSV line,
an unfinalised WAV header, an unfinished video segment), reporting what it dropped."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import soundfile as sf

from devices.base import Chunk
from devices.session.format import FORMAT_NAME, FORMAT_VERSION, SESSION_JSON, SESSION_KEYS, SessionError, StreamData


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
    def metadata(self) -> dict[str, Any]:
        """The extra top-level keys of session.json (the writer's ``metadata``), without the format's own."""
        return {k: v for k, v in self.meta.items() if k not in SESSION_KEYS}

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
        elif modality in ("imu", "pose"):
            data = self._read_table(stream, modality, info, notes)
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

    def _read_table(self, name: str, modality: str, info: dict, notes: list[str]) -> StreamData:
        """An ``imu`` or ``pose`` CSV; rows are reshaped to the recorded per-sample shape."""
        path = self.folder / info["files"]["csv"]
        dtype = np.dtype(info.get("dtype") or "float32")
        shape = [int(v) for v in (info.get("shape") or [6])]
        if not path.exists():
            notes.append(f"{path.name}: missing")
            return StreamData(name, modality, np.zeros(0), np.zeros((0, *shape), dtype), None)
        header, lines, partial = _read_csv_lines(path)
        if partial:
            notes.append(f"{path.name}: partial last line dropped")
        ncols = len(header) if header else 1 + int(np.prod(shape))
        rows, bad = _parse_rows(path, lines, ncols)
        if bad:
            notes.append(f"{path.name}: {bad} malformed lines skipped")
        ts = rows[:, 0].copy()
        data = rows[:, 1:].astype(dtype)
        if int(np.prod(shape)) == data.shape[1]:
            data = data.reshape(len(data), *shape)
        rate = None
        if len(ts) > 1 and ts[-1] > ts[0]:
            rate = (len(ts) - 1) / (ts[-1] - ts[0])
        return StreamData(name, modality, ts, data, rate)

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
