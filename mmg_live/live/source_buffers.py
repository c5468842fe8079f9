"""Ring buffers for live sources, each created when its source's first chunk arrives."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from devices.base import Chunk, Source
from mmg_common import MODALITIES
from mmg_live.live.buffer import StreamBuffer, Synchronizer
from mmg_live.live.windowing import FETCH_MARGIN_S

if TYPE_CHECKING:
    from mmg_live.models.mmg import MMGModel


class SourceBuffers:
    """Ring buffers for live sources, each created from its source's first chunk.

    A buffer's sample shape (e.g. a camera's frame size) is only known once data arrives, so
    :meth:`attach` subscribes to every source and creates the stream's :class:`StreamBuffer`
    on its first chunk (rate from ``health().nominal_rate``, else ``default_rates``), then adds
    it to :attr:`synchronizer` by swapping in a new dict (readers never see it change size).
    ``streams`` maps each modality to the first stream of that modality, for the engine;
    ``sources`` maps each stream name to its source (the engine reads their health).
    ``seconds`` is the history held, for every stream or per modality (see :meth:`for_model`).
    """

    default_rates = {"video": 30.0, "audio": 16000.0, "imu": 50.0, "pose": 15.0}

    def __init__(self, seconds: float | Mapping[str, float] = 8.0) -> None:
        self.seconds = seconds if isinstance(seconds, Mapping) else {m: float(seconds) for m in MODALITIES}
        self.synchronizer = Synchronizer({})
        self.streams: dict[str, str] = {}
        self.sources: dict[str, Source] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, model: "MMGModel", slack_s: float = 0.5) -> "SourceBuffers":
        """Buffers holding just what the model's windows need (a 640x480 RGB camera is ~1 MB a frame)."""
        specs = model.config.specs
        return cls({m: specs[m].window_s + 2 * FETCH_MARGIN_S + slack_s for m in MODALITIES})

    def attach(self, sources: Sequence[Source]) -> dict[str, str]:
        """Subscribe to ``sources`` (call before starting them); returns ``streams``."""
        for src in sources:
            self.streams.setdefault(src.modality, src.name)
            self.sources[src.name] = src
            src.subscribe(self._append_to(src))
        return dict(self.streams)

    def _append_to(self, src: Source) -> Callable[[Chunk], None]:
        def append(chunk: Chunk) -> None:
            buf = self.synchronizer.buffers.get(src.name)
            if buf is None:
                buf = self._create(src, chunk)
            buf.append(chunk)
        return append

    def _create(self, src: Source, chunk: Chunk) -> StreamBuffer:
        with self._lock:
            existing = self.synchronizer.buffers.get(src.name)
            if existing is not None:
                return existing
            rate = src.health().nominal_rate or self.default_rates[src.modality]
            dtype = np.uint8 if src.modality == "video" else np.float32
            seconds = self.seconds.get(src.modality, max(self.seconds.values()))
            buf = StreamBuffer(src.modality, seconds, rate, np.asarray(chunk.data).shape[1:], dtype,
                               name=src.name)
            self.synchronizer.buffers = {**self.synchronizer.buffers, src.name: buf}
            return buf
