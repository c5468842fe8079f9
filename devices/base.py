"""The capture interface every device adapter implements.

A :class:`Source` produces :class:`Chunk` objects: a block of samples (or video frames)
of one modality, each stamped with host-monotonic time in seconds at acquisition.
Sources push chunks to subscribers from their own capture thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from mmg_common import MODALITIES  # noqa: F401  (re-exported: the modality names sources use)


def host_now() -> float:
    """Host monotonic time in seconds: the one clock every timestamp in mmg-live uses."""
    return time.monotonic()


@dataclass(frozen=True)
class Chunk:
    """A block of samples from one stream.

    Attributes:
        modality: ``"video"``, ``"audio"`` or ``"imu"``.
        timestamps: float64 array ``[n]``, host-monotonic seconds, one per sample/frame.
        data: array ``[n, ...]``: video ``[n, H, W, C]`` uint8, audio ``[n, channels]`` float32,
            imu ``[n, 6]`` float32 (accel x,y,z then gyro x,y,z in the source's declared units).
        stream: the stream's name (several streams may share a modality).
    """

    modality: str
    timestamps: np.ndarray
    data: np.ndarray
    stream: str = ""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"Chunk: unknown modality {self.modality!r}; expected one of {MODALITIES}")
        if len(self.timestamps) != len(self.data):
            raise ValueError(
                f"Chunk({self.modality}): {len(self.timestamps)} timestamps for {len(self.data)} samples"
            )


@dataclass
class Health:
    """What a source says about itself; read by the engine (liveness) and the GUI."""

    nominal_rate: float = 0.0
    measured_rate: float = 0.0
    samples: int = 0
    dropped: int = 0
    late: int = 0
    gaps: int = 0
    last_sample_time: float | None = None
    bad_lines: int = 0
    reconnects: int = 0
    clock_offset: float = 0.0
    clock_drift_ppm: float = 0.0
    connected: bool = False
    error: str | None = None
    #: True once a source with an end (a replay without ``loop``) has emitted its last sample.
    finished: bool = False
    extra: dict = field(default_factory=dict)

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the newest sample, or None when none arrived yet."""
        if self.last_sample_time is None:
            return None
        return (host_now() if now is None else now) - self.last_sample_time


ChunkCallback = Callable[[Chunk], None]


@runtime_checkable
class Source(Protocol):
    """A capture device or a replay of one."""

    name: str
    modality: str

    def start(self) -> None:
        """Open the device and begin pushing chunks. Raises ``DeviceError`` when it cannot open."""

    def stop(self) -> None:
        """Stop capturing and release the device. Idempotent."""

    def subscribe(self, callback: ChunkCallback) -> None:
        """Call ``callback(chunk)`` for every chunk from now on (from the capture thread)."""

    def health(self) -> Health:
        """A snapshot of the source's health."""


class DeviceError(RuntimeError):
    """A device could not be opened or was lost; the message says which and why."""


class SourceBase:
    """Subscriber bookkeeping and health for concrete sources."""

    modality: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[ChunkCallback] = []
        self._lock = threading.Lock()
        self._health = Health()

    def subscribe(self, callback: ChunkCallback) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def _emit(self, chunk: Chunk) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
            self._health.samples += len(chunk.timestamps)
            if len(chunk.timestamps):
                self._health.last_sample_time = float(chunk.timestamps[-1])
        for callback in subscribers:
            callback(chunk)

    def health(self) -> Health:
        with self._lock:
            return Health(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self._health).items()})
