"""Recorded ``mmg-live`` sessions → one Clip per labelled segment.

A session folder (written by :class:`devices.session.SessionWriter`) holds
``session.json`` with ``segments: [{"label", "t0", "t1"}]`` in host-monotonic seconds and the
streams' files; :class:`~devices.session.SessionReader` reads them. Each segment becomes
a Clip whose streams hold the samples with ``t0 <= t <= t1`` (the writer's segments are closed
intervals), re-based so the clip starts at 0.0. When a session has several streams of one
modality, the first listed in ``session.json`` is used.

Optional ``session.json`` keys written by ``mmg-data import`` (the writer's extra metadata):
``subject`` (who), ``source`` (dataset name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from devices.session import SESSION_JSON, SessionError, SessionReader
from mmg_common import MODALITIES
from trainer.data.cache import Cache, file_key
from trainer.data.clip import Clip, DataError, Stream

READER_VERSION = 1
SOURCE = "session"


@dataclass(frozen=True)
class SegmentRef:
    """One labelled segment of one session folder."""

    folder: Path
    index: int
    label: str
    t0: float
    t1: float
    subject: str

    @property
    def clip_id(self) -> str:
        return f"{self.folder.name}#{self.index}"


def list_sessions(root: str | Path) -> list[Path]:
    """Session folders (holding ``session.json``) at or below ``root``, sorted."""
    root = Path(root)
    if (root / SESSION_JSON).is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    return sorted(p.parent for p in root.rglob(SESSION_JSON))


def _reader(folder: Path) -> SessionReader:
    try:
        return SessionReader(folder)
    except SessionError as exc:
        raise DataError(str(exc)) from None


def list_segments(folder: str | Path) -> list[SegmentRef]:
    """The labelled segments of one session (reads ``session.json`` only)."""
    folder = Path(folder)
    reader = _reader(folder)
    subject = str(reader.metadata.get("subject") or "")
    out = []
    for i, seg in enumerate(reader.segments):
        try:
            label, t0, t1 = str(seg["label"]), float(seg["t0"]), float(seg["t1"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{folder / SESSION_JSON}: segment {i} is not {{label, t0, t1}}: {seg!r}") from None
        out.append(SegmentRef(folder, i, label, t0, t1, subject))
    return out


def _pick_streams(reader: SessionReader, modalities: Sequence[str]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for name, info in reader.streams.items():
        m = info.get("modality")
        if m in modalities and m not in chosen:
            chosen[m] = name
    return chosen


def _to_stream(modality: str, data: np.ndarray, ts: np.ndarray, rate: float | None) -> Stream:
    if modality == "audio":
        data = data.reshape(len(data), -1)
        data = data.mean(axis=1, keepdims=True) if data.shape[1] > 1 else data
        data = data.astype(np.float32, copy=False)
    elif modality == "imu":
        data = data.astype(np.float32, copy=False)
    if not rate:
        rate = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0
    return Stream(data, ts, float(rate))


def _read_streams(folder: Path, modalities: Sequence[str]) -> dict[str, Stream]:
    """The first stream of each requested modality of a session, whole."""
    reader = _reader(folder)
    streams = {}
    for m, name in _pick_streams(reader, modalities).items():
        try:
            sd = reader.read(name)
        except (SessionError, OSError, KeyError, ValueError) as exc:
            raise DataError(f"{folder}: cannot read stream {name!r} ({exc})") from None
        streams[m] = _to_stream(m, sd.data, sd.timestamps, sd.rate)
    return streams


def load_session(
    folder: str | Path,
    class_names: Sequence[str] | None = None,
    modalities: Sequence[str] = MODALITIES,
) -> list[Clip]:
    """All labelled segments of one session as Clips.

    Args:
        folder: the session folder.
        class_names: label order; a segment label not in it raises :class:`DataError`.
            Default: this session's sorted distinct labels.
        modalities: which modalities to read.
    """
    folder = Path(folder)
    segs = list_segments(folder)
    names = tuple(class_names) if class_names is not None else tuple(sorted({s.label for s in segs}))
    streams = _read_streams(folder, modalities)
    return [_segment_clip(s, streams, names) for s in segs]


def _segment_clip(seg: SegmentRef, streams: dict[str, Stream], class_names: Sequence[str]) -> Clip:
    if seg.label not in class_names:
        raise DataError(
            f"{seg.folder / SESSION_JSON}: segment {seg.index} label {seg.label!r} is not among the classes"
        )
    cropped = {}
    for m, s in streams.items():
        keep = (s.timestamps >= seg.t0) & (s.timestamps <= seg.t1)
        if keep.any():
            cropped[m] = Stream(s.data[keep], s.timestamps[keep] - seg.t0, s.rate)
    if not cropped:
        raise DataError(f"{seg.folder}: segment {seg.index} ({seg.label!r}, {seg.t0}..{seg.t1}) holds no samples")
    return Clip(
        clip_id=seg.clip_id,
        streams=cropped,
        label=list(class_names).index(seg.label),
        label_name=seg.label,
        subject=seg.subject,
        session=seg.folder.name,
        split=None,
        source=SOURCE,
    )


class SessionDataset:
    """Labelled segments of many session folders as Clips.

    Args:
        roots: session folders or folders containing them.
        class_names: label order; default the sorted distinct labels of all segments.
        modalities: which modalities to read.
        cache: decoded clips are cached here when given (keyed by every file of the session).

    ``ds[i]`` raises :class:`DataError`; iteration skips bad segments into :attr:`skipped`.
    Sessions whose ``session.json`` cannot be read are listed in :attr:`skipped` at once.
    """

    def __init__(
        self,
        roots: str | Path | Iterable[str | Path],
        class_names: Sequence[str] | None = None,
        modalities: Sequence[str] = MODALITIES,
        cache: Cache | None = None,
    ) -> None:
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.skipped: list[tuple[str, str]] = []
        self.segments: list[SegmentRef] = []
        for root in roots:
            for folder in list_sessions(root):
                try:
                    self.segments.extend(list_segments(folder))
                except DataError as exc:
                    self.skipped.append((str(folder), str(exc)))
        if class_names is None:
            class_names = sorted({s.label for s in self.segments})
        self.class_names = tuple(class_names)
        self.modalities = tuple(modalities)
        self.cache = cache
        self._streams: tuple[Path, dict[str, Stream]] | None = None

    def __len__(self) -> int:
        return len(self.segments)

    @property
    def labels(self) -> list[int]:
        return [self.class_names.index(s.label) for s in self.segments]

    def _session_streams(self, folder: Path) -> dict[str, Stream]:
        if self._streams is None or self._streams[0] != folder:
            self._streams = (folder, _read_streams(folder, self.modalities))
        return self._streams[1]

    def __getitem__(self, index: int) -> Clip:
        seg = self.segments[index]
        if self.cache is None:
            return _segment_clip(seg, self._session_streams(seg.folder), self.class_names)
        files = sorted(p for p in seg.folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
        key = {
            "reader": SOURCE,
            "version": READER_VERSION,
            "segment": [seg.index, seg.label, seg.t0, seg.t1],
            "classes": list(self.class_names),
            "modalities": sorted(self.modalities),  # the same clip whatever order they were asked in
            "files": [file_key(f) for f in files],
        }
        return self.cache.cached_clip(
            key, lambda: _segment_clip(seg, self._session_streams(seg.folder), self.class_names)
        )

    def __iter__(self) -> Iterator[Clip]:
        for i, seg in enumerate(self.segments):
            try:
                yield self[i]
            except DataError as exc:
                self.skipped.append((seg.clip_id, str(exc)))
