"""The one clip format the trainer reads: raw per-modality arrays with per-sample timestamps.

Conventions (the live devices produce the same arrays):

- ``video``: ``[N, H, W, C]`` uint8, C = 1 (grayscale / rendered depth) or 3 (RGB).
- ``audio``: ``[N, 1]`` float32 in [-1, 1].
- ``imu``: ``[N, 6]`` float32, accel x, y, z in g, then gyro x, y, z in deg/s.

Timestamps are float64 seconds, one per sample; a dataset clip's timestamps start at 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmg_common import MODALITIES  # still importable from here and from trainer.data


class DataError(ValueError):
    """A data file is missing, corrupt or malformed; the message names the file and what is wrong."""


@dataclass
class Stream:
    """One modality's samples of a clip.

    Attributes:
        data: ``[N, ...]`` array following the module's conventions.
        timestamps: float64 ``[N]`` seconds, one per sample, non-decreasing.
        rate: nominal sample rate in Hz (frames per second for video).
    """

    data: np.ndarray
    timestamps: np.ndarray
    rate: float

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if self.timestamps.ndim != 1 or len(self.timestamps) != len(self.data):
            raise ValueError(
                f"Stream: {self.timestamps.shape} timestamps for data of shape {self.data.shape}"
            )

    def __len__(self) -> int:
        return len(self.data)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last sample (0.0 for fewer than two samples)."""
        return float(self.timestamps[-1] - self.timestamps[0]) if len(self.timestamps) > 1 else 0.0

    def crop(self, t0: float, t1: float) -> "Stream":
        """Samples with ``t0 <= t < t1``, timestamps unchanged."""
        keep = (self.timestamps >= t0) & (self.timestamps < t1)
        return Stream(self.data[keep], self.timestamps[keep], self.rate)

    def shifted(self, offset: float) -> "Stream":
        """The same samples with ``offset`` seconds added to every timestamp."""
        return Stream(self.data, self.timestamps + offset, self.rate)


@dataclass
class Clip:
    """A labelled (or unlabelled) multimodal clip.

    Attributes:
        clip_id: unique within its source, e.g. ``"a1_s1_t1"``.
        streams: modality name (``"video"``, ``"audio"``, ``"imu"``) → :class:`Stream`.
        label: class index, or None when unlabelled.
        label_name: human-readable class name, or None.
        subject: who performed / recorded it (subject, speaker, wearer).
        session: recording session within the subject (trial, recording index, session folder).
        split: ``"train"``/``"test"``/... when a reader assigns one, else None.
        source: the dataset or reader name, e.g. ``"utd-mhad"``.
    """

    clip_id: str
    streams: dict[str, Stream]
    label: int | None
    label_name: str | None
    subject: str
    session: str
    split: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for name in self.streams:
            if name not in MODALITIES:
                raise ValueError(f"Clip {self.clip_id}: unknown modality {name!r}; expected one of {MODALITIES}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities present, in canonical order."""
        return tuple(m for m in MODALITIES if m in self.streams)


def validate_stream(modality: str, stream: Stream, where: str) -> None:
    """Raise :class:`DataError` when ``stream`` breaks the module's conventions for ``modality``.

    ``where`` names the file or clip in the message.
    """
    d = stream.data
    if modality == "video":
        if d.dtype != np.uint8 or d.ndim != 4 or d.shape[-1] not in (1, 3):
            raise DataError(f"{where}: video must be [N,H,W,1|3] uint8, got {d.shape} {d.dtype}")
    elif modality == "audio":
        if d.dtype != np.float32 or d.ndim != 2 or d.shape[1] != 1:
            raise DataError(f"{where}: audio must be [N,1] float32, got {d.shape} {d.dtype}")
    elif modality == "imu":
        if d.dtype != np.float32 or d.ndim != 2 or d.shape[1] != 6:
            raise DataError(f"{where}: imu must be [N,6] float32, got {d.shape} {d.dtype}")
    else:
        raise DataError(f"{where}: unknown modality {modality!r}")
    if len(stream.timestamps) > 1 and np.any(np.diff(stream.timestamps) < 0):
        raise DataError(f"{where}: {modality} timestamps go backwards")


def clip_to_arrays(clip: Clip) -> dict[str, np.ndarray]:
    """Flatten a clip into named arrays (for the ``.npz`` cache); inverse of :func:`arrays_to_clip`."""
    out: dict[str, np.ndarray] = {}
    for name, s in clip.streams.items():
        out[f"{name}/data"] = s.data
        out[f"{name}/timestamps"] = s.timestamps
        out[f"{name}/rate"] = np.asarray(s.rate, dtype=np.float64)
    out["label"] = np.asarray(-1 if clip.label is None else clip.label, dtype=np.int64)
    for key in ("clip_id", "label_name", "subject", "session", "split", "source"):
        value = getattr(clip, key)
        out[f"meta/{key}"] = np.asarray("" if value is None else value, dtype=np.str_)
    out["meta/has_label_name"] = np.asarray(clip.label_name is not None)
    out["meta/has_split"] = np.asarray(clip.split is not None)
    return out


def arrays_to_clip(arrays: dict[str, np.ndarray]) -> Clip:
    """Rebuild a :class:`Clip` from :func:`clip_to_arrays` output."""
    streams = {
        m: Stream(arrays[f"{m}/data"], arrays[f"{m}/timestamps"], float(arrays[f"{m}/rate"]))
        for m in MODALITIES
        if f"{m}/data" in arrays
    }
    label = int(arrays["label"])
    meta = {k: str(arrays[f"meta/{k}"]) for k in ("clip_id", "label_name", "subject", "session", "split", "source")}
    return Clip(
        clip_id=meta["clip_id"],
        streams=streams,
        label=None if label < 0 else label,
        label_name=meta["label_name"] if bool(arrays["meta/has_label_name"]) else None,
        subject=meta["subject"],
        session=meta["session"],
        split=meta["split"] if bool(arrays["meta/has_split"]) else None,
        source=meta["source"],
    )
