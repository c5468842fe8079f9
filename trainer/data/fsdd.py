"""Free Spoken Digit Dataset reader: ``recordings/{digit}_{speaker}_{index}.wav`` → audio-only Clips."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile

from trainer.data.cache import Cache, file_key
from trainer.data.clip import Clip, DataError, Stream

READER_VERSION = 1
SOURCE = "fsdd"
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Recording:
    """One FSDD recording: spoken digit, speaker, index and path."""

    digit: int
    speaker: str
    index: int
    path: Path

    @property
    def clip_id(self) -> str:
        return f"{self.digit}_{self.speaker}_{self.index}"


def list_recordings(root: str | Path, speakers: Iterable[str] | None = None) -> list[Recording]:
    """Recordings under ``root/recordings`` (or ``root`` itself when it holds the wavs), sorted.

    Raises :class:`DataError` when the folder does not exist.
    """
    root = Path(root)
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{root}: not an FSDD folder (no recordings/ inside)")
    keep = None if speakers is None else set(speakers)
    out = []
    for f in folder.iterdir():
        m = _NAME.match(f.name)
        if m and (keep is None or m.group(2) in keep):
            out.append(Recording(int(m.group(1)), m.group(2), int(m.group(3)), f))
    return sorted(out, key=lambda r: (r.speaker, r.digit, r.index))


def load_recording(rec: Recording) -> Clip:
    """One recording as a Clip: audio ``[N, 1]`` float32 in [-1, 1] at the file's rate, t from 0.

    Raises :class:`DataError` naming the file when it is missing, unreadable, empty or not mono.
    """
    if not rec.path.is_file():
        raise DataError(f"{rec.path}: file is missing")
    try:
        data, rate = soundfile.read(str(rec.path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, ...
        raise DataError(f"{rec.path}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise DataError(f"{rec.path}: no samples")
    if data.shape[1] != 1:
        data = data.mean(axis=1, keepdims=True, dtype=np.float32)
    return Clip(
        clip_id=rec.clip_id,
        streams={"audio": Stream(data, np.arange(len(data)) / float(rate), float(rate))},
        label=rec.digit,
        label_name=DIGITS[rec.digit],
        subject=rec.speaker,
        session=str(rec.index),
        split=None,
        source=SOURCE,
    )


class FsddDataset:
    """FSDD recordings of some speakers as Clips (label = digit, subject = speaker).

    ``ds[i]`` raises :class:`DataError` for a bad file; iteration skips it and records
    ``(clip_id, reason)`` in :attr:`skipped`.
    """

    def __init__(
        self,
        root: str | Path,
        speakers: Iterable[str] | None = None,
        split: str | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.root = Path(root)
        self.recordings = list_recordings(self.root, speakers)
        self.split = split
        self.cache = cache
        self.skipped: list[tuple[str, str]] = []
        self.class_names = DIGITS

    def __len__(self) -> int:
        return len(self.recordings)

    @property
    def labels(self) -> list[int]:
        return [r.digit for r in self.recordings]

    @property
    def speakers(self) -> list[str]:
        return sorted({r.speaker for r in self.recordings})

    def __getitem__(self, index: int) -> Clip:
        rec = self.recordings[index]
        if self.cache is None:
            clip = load_recording(rec)
        else:
            if not rec.path.is_file():
                raise DataError(f"{rec.path}: file is missing")
            key = {"reader": SOURCE, "version": READER_VERSION, "file": file_key(rec.path)}
            clip = self.cache.cached_clip(key, lambda: load_recording(rec))
        clip.split = self.split
        return clip

    def __iter__(self) -> Iterator[Clip]:
        for i in range(len(self.recordings)):
            try:
                yield self[i]
            except DataError as exc:
                self.skipped.append((self.recordings[i].clip_id, str(exc)))
