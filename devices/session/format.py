"""The session folder format's names: file names, codecs, the keys ``session.json`` owns, the
error type, and :class:`StreamData`, one stream read back. Shared by the writer and the reader;
it needs neither OpenCV nor libsndfile, so code that only handles read-back streams stays light."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from devices.base import Chunk

FORMAT_NAME = "mmg-live-session"
FORMAT_VERSION = 1
SESSION_JSON = "session.json"

#: The top-level keys of ``session.json`` that the format itself writes; the writer's extra
#: ``metadata`` may use any other key.
SESSION_KEYS: frozenset[str] = frozenset({
    "format", "format_version", "wall_clock_start", "host_monotonic_start", "last_flush_host", "closed",
    "devices", "calibration", "streams", "counters", "segments",
})

#: codec name -> (fourcc, segment file extension)
VIDEO_CODECS: dict[str, tuple[str, str]] = {
    "ffv1": ("FFV1", ".mkv"),
    "mp4v": ("mp4v", ".mp4"),
    "mjpg": ("MJPG", ".avi"),
}
#: Column names of a 6-channel IMU stream's CSV (after ``host_time``).
IMU_COLUMNS = ("ax", "ay", "az", "gx", "gy", "gz")


class SessionError(RuntimeError):
    """A session folder could not be written or read; the message names the file and why."""


def stream_key(chunk: Chunk) -> str:
    """The name a chunk's stream is recorded under: ``chunk.stream``, else its modality."""
    return chunk.stream or chunk.modality


@dataclass
class StreamData:
    """One recorded stream read back.

    Attributes:
        name: stream name.
        modality: ``"video"``, ``"audio"`` or ``"imu"``.
        timestamps: float64 ``[n]`` host-monotonic seconds.
        data: ``[n, ...]`` (video uint8 ``[n, H, W, C]``, audio float32 ``[n, ch]``, imu ``[n, 6]``;
            code that derives a signal per sample, e.g. calibration's frame-difference energy
            ``[n]``, keeps the same shape rule).
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
            end = start + size
            yield Chunk(self.modality, self.timestamps[start:end], self.data[start:end], self.name)
            start = end
