"""MMG-Ego4D-style manifests: rows of (video with audio track, IMU CSV, start, end, label) → Clips.

A manifest is a ``.csv`` (header row) or ``.jsonl`` (one object per line) with fields:

- ``video``: video file (its audio track is the audio stream); empty for none.
- ``imu``: CSV with a header: a ``t`` column (seconds, same clock as the video) and six
  channels accel x, y, z then gyro x, y, z, in that column order; empty for none.
- ``start``, ``end``: the clip's interval in seconds of that clock.
- ``label``: class index or class name.
- optional: ``clip_id``, ``subject``, ``session``, ``split``,
  ``accel_unit`` (``g`` default, or ``m/s2``), ``gyro_unit`` (``deg/s`` default, or ``rad/s``).

Relative paths are relative to the manifest's folder. Every stream is cropped to
``[start, end)`` and its timestamps re-based so the clip starts at 0.0. Video frames are
decoded with OpenCV (timestamps from ``CAP_PROP_POS_MSEC``, RGB), the audio track with PyAV
(mono float32 at the track's own rate, timestamps from frame pts).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np

from mmg_common import MODALITIES
from trainer.data.cache import Cache, file_key
from trainer.data.clip import Clip, DataError, Stream

READER_VERSION = 1
SOURCE = "manifest"
_G = 9.80665
ACCEL_SCALE = {"g": 1.0, "m/s2": 1.0 / _G, "m/s^2": 1.0 / _G}
GYRO_SCALE = {"deg/s": 1.0, "rad/s": 180.0 / math.pi}


@dataclass(frozen=True)
class ManifestRow:
    """One parsed manifest row (paths resolved)."""

    where: str
    video: Path | None
    imu: Path | None
    start: float
    end: float
    label: str
    clip_id: str
    subject: str
    session: str
    split: str | None
    accel_unit: str = "g"
    gyro_unit: str = "deg/s"


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Parse a ``.csv`` or ``.jsonl`` manifest; :class:`DataError` naming file and line on bad rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest file is missing")
    raw: list[tuple[str, dict]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object")
                raw.append((f"{path}:{n}", obj))
    else:
        with path.open(newline="") as f:
            raw = [(f"{path}:{n}", row) for n, row in enumerate(csv.DictReader(f), 2)]
    rows = []
    for i, (where, r) in enumerate(raw):
        def get(key: str, default: str = "", row: dict = r) -> str:  # row bound now: called in this iteration only
            v = row.get(key)
            return default if v is None else str(v).strip()

        try:
            start, end = float(get("start")), float(get("end"))
        except ValueError:
            raise DataError(f"{where}: start/end must be numbers (got {get('start')!r}, {get('end')!r})") from None
        if not end > start:
            raise DataError(f"{where}: end ({end}) must be after start ({start})")
        video, imu = get("video"), get("imu")
        if not video and not imu:
            raise DataError(f"{where}: neither a video nor an imu file")
        if not get("label"):
            raise DataError(f"{where}: no label")
        accel, gyro = get("accel_unit", "g") or "g", get("gyro_unit", "deg/s") or "deg/s"
        if accel not in ACCEL_SCALE or gyro not in GYRO_SCALE:
            raise DataError(f"{where}: unknown unit accel={accel!r} gyro={gyro!r}")
        stem = Path(video or imu).stem
        rows.append(
            ManifestRow(
                where=where,
                video=(path.parent / video) if video else None,
                imu=(path.parent / imu) if imu else None,
                start=start,
                end=end,
                label=get("label"),
                clip_id=get("clip_id") or f"{stem}_{i}",
                subject=get("subject"),
                session=get("session") or stem,
                split=get("split") or None,
                accel_unit=accel,
                gyro_unit=gyro,
            )
        )
    return rows


def read_video(path: Path, start: float, end: float) -> Stream:
    """RGB frames with ``start <= t < end`` (t from ``CAP_PROP_POS_MSEC``), timestamps unchanged."""
    if not path.is_file():
        raise DataError(f"{path}: video file is missing")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: OpenCV cannot open the video")
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
        if start > 1.0:  # seek near the start; fall back to decoding from 0 if it overshoots
            cap.set(cv2.CAP_PROP_POS_MSEC, (start - 1.0) * 1000.0)
        frames, stamps = [], []
        first = True
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if first and t > start and start > 1.0:
                cap.release()
                cap = cv2.VideoCapture(str(path))
                first = False
                continue
            first = False
            if t >= end:
                break
            if t >= start:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                stamps.append(t)
    finally:
        cap.release()
    if not frames:
        raise DataError(f"{path}: no video frames in [{start}, {end}) s")
    return Stream(np.stack(frames), np.asarray(stamps), fps or len(frames) / (end - start))


def read_audio_track(path: Path, start: float, end: float) -> Stream | None:
    """The first audio track's samples with ``start <= t < end`` as mono float32; None without a track."""
    result, first = _decode_audio(path, start, end, seek=start > 1.0)
    if first is not None and first > start:
        result, _ = _decode_audio(path, start, end, seek=False)  # the seek overshot: decode from 0
    return result


def _decode_audio(path: Path, start: float, end: float, seek: bool) -> tuple[Stream | None, float | None]:
    """(samples in ``[start, end)``, time of the first decoded sample)."""
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.*
        raise DataError(f"{path}: PyAV cannot open the file ({exc})") from exc
    try:
        if not container.streams.audio:
            return None, None
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if seek and stream.time_base:
            # Lands on a packet at or before start - 1 s; decoded frames keep their true pts.
            container.seek(int((start - 1.0) / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks, stamps = [], []
        n_done = 0
        for frame in container.decode(stream):
            if frame.time is None and seek:
                raise DataError(f"{path}: audio frames carry no timestamps; cannot seek")
            t0 = frame.time if frame.time is not None else n_done / rate
            for out in resampler.resample(frame):
                x = out.to_ndarray().reshape(-1)
                chunks.append(x)
                stamps.append(t0 + np.arange(len(x)) / rate)
                t0 += len(x) / rate
                n_done += len(x)
            if t0 >= end:
                break
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot decode the audio track ({exc})") from exc
    finally:
        container.close()
    if not chunks:
        return None, None
    data = np.concatenate(chunks).astype(np.float32)[:, None]
    ts = np.concatenate(stamps)
    keep = (ts >= start) & (ts < end)
    return Stream(np.clip(data[keep], -1.0, 1.0), ts[keep], float(rate)), float(ts[0])


def read_imu_csv(path: Path, accel_unit: str = "g", gyro_unit: str = "deg/s") -> Stream:
    """An IMU CSV (``t`` + six channels) as a g / deg/s float32 stream; rate estimated from ``t``."""
    if not path.is_file():
        raise DataError(f"{path}: IMU file is missing")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "t" not in header or len(header) != 7:
            raise DataError(f"{path}: header must be 't' plus six channel columns, got {header}")
        ti = header.index("t")
        rows = []
        for n, row in enumerate(reader, 2):
            if not row:
                continue
            try:
                rows.append([float(v) for v in row])
            except ValueError:
                raise DataError(f"{path}:{n}: not numbers: {row}") from None
            if len(row) != 7:
                raise DataError(f"{path}:{n}: expected 7 values, got {len(row)}")
    if not rows:
        raise DataError(f"{path}: no IMU samples")
    arr = np.asarray(rows, dtype=np.float64)
    t = arr[:, ti]
    if np.any(np.diff(t) < 0):
        raise DataError(f"{path}: 't' goes backwards")
    x = np.delete(arr, ti, axis=1)
    x[:, :3] *= ACCEL_SCALE[accel_unit]
    x[:, 3:] *= GYRO_SCALE[gyro_unit]
    rate = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
    return Stream(x.astype(np.float32), t, float(rate))


def load_row(
    row: ManifestRow, class_names: Sequence[str], modalities: Sequence[str] = MODALITIES
) -> Clip:
    """Decode one manifest row into a Clip cropped to ``[start, end)`` and re-based to 0."""
    streams: dict[str, Stream] = {}
    if row.video is not None and "video" in modalities:
        streams["video"] = read_video(row.video, row.start, row.end)
    if row.video is not None and "audio" in modalities:
        audio = read_audio_track(row.video, row.start, row.end)
        if audio is not None and len(audio):
            streams["audio"] = audio
    if row.imu is not None and "imu" in modalities:
        imu = read_imu_csv(row.imu, row.accel_unit, row.gyro_unit).crop(row.start, row.end)
        if not len(imu):
            raise DataError(f"{row.imu}: no IMU samples in [{row.start}, {row.end}) s")
        streams["imu"] = imu
    streams = {m: s.shifted(-row.start) for m, s in streams.items()}
    label = _label_index(row, class_names)
    return Clip(
        clip_id=row.clip_id,
        streams=streams,
        label=label,
        label_name=class_names[label],
        subject=row.subject,
        session=row.session,
        split=row.split,
        source=SOURCE,
    )


def _label_index(row: ManifestRow, class_names: Sequence[str]) -> int:
    if row.label in class_names:
        return list(class_names).index(row.label)
    try:
        idx = int(row.label)
    except ValueError:
        raise DataError(f"{row.where}: label {row.label!r} is not a known class") from None
    if not 0 <= idx < len(class_names):
        raise DataError(f"{row.where}: label {idx} outside 0..{len(class_names) - 1}")
    return idx


class ManifestDataset:
    """The rows of a manifest as Clips.

    Args:
        path: the manifest (``.csv`` or ``.jsonl``).
        class_names: class names in label order; default: the sorted distinct labels when they
            are names, else ``"0" .. str(max)`` when they are all integers.
        modalities: which streams to decode.
        cache: decoded clips are cached here when given.

    ``ds[i]`` raises :class:`DataError`; iteration skips bad rows into :attr:`skipped`.
    """

    def __init__(
        self,
        path: str | Path,
        class_names: Sequence[str] | None = None,
        modalities: Sequence[str] = MODALITIES,
        cache: Cache | None = None,
    ) -> None:
        self.path = Path(path)
        self.rows = read_manifest(self.path)
        if class_names is None:
            labels = {r.label for r in self.rows}
            if all(lbl.lstrip("-").isdigit() for lbl in labels):
                class_names = [str(i) for i in range(max(int(x) for x in labels) + 1)] if labels else []
            else:
                class_names = sorted(labels)
        self.class_names = tuple(class_names)
        self.modalities = tuple(modalities)
        self.cache = cache
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[int]:
        return [_label_index(r, self.class_names) for r in self.rows]

    def __getitem__(self, index: int) -> Clip:
        row = self.rows[index]
        if self.cache is None:
            return load_row(row, self.class_names, self.modalities)
        files = [p for p in (row.video, row.imu) if p is not None]
        for f in files:
            if not f.is_file():
                raise DataError(f"{f}: file is missing ({row.where})")
        key = {
            "reader": SOURCE,
            "version": READER_VERSION,
            "row": [row.start, row.end, row.label, row.clip_id, row.accel_unit, row.gyro_unit],
            "classes": list(self.class_names),
            "modalities": sorted(self.modalities),  # the same clip whatever order they were asked in
            "files": [file_key(f) for f in files],
        }
        clip = self.cache.cached_clip(key, lambda: load_row(row, self.class_names, self.modalities))
        return clip

    def __iter__(self) -> Iterator[Clip]:
        for i, row in enumerate(self.rows):
            try:
                yield self[i]
            except DataError as exc:
                self.skipped.append((row.where, str(exc)))
