"""The GUI's live pipeline, without Qt: sources, display buffers, engine, custom actions, recording.

:class:`LiveSession` opens the sources its :class:`~mmg_live.options.LiveOptions` name (through
:func:`mmg_live.sources.open_sources`, as ``mmg-live --headless`` does), keeps short display
buffers for the preview, level meter and IMU traces, runs the
:class:`~mmg_live.live.engine.InferenceEngine` on its own buffers when a model is loaded and can
reopen everything with another :class:`~mmg_live.sources.DeviceConfig`. A device that fails to
open is reported as a one-line message and the others keep running.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from devices.base import MODALITIES, Chunk, ChunkCallback, Health, Source, host_now
from devices.clock import RateMeter
from mmg_common import one_line
from mmg_live.live.engine import InferenceEngine
from mmg_live.live.prediction import Prediction
from mmg_live.live.source_buffers import SourceBuffers
from mmg_live.options import LiveOptions
from mmg_live.sources import DeviceConfig, OpenedSource, calibration_record, device_settings, open_sources

#: Seconds of history the display keeps per modality (the IMU traces show the last few seconds).
DISPLAY_SECONDS = {"video": 1.0, "audio": 1.0, "imu": 6.0, "pose": 1.0}
#: A device with no sample for longer than this is stale.
STALE_AFTER_S = 1.0


def default_prototypes_path() -> Path:
    """``$XDG_DATA_HOME/mmg-live/prototypes.safetensors`` (default ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mmg-live" / "prototypes.safetensors"


class Fanout:
    """One subscriber on a source that forwards to a list of callbacks changeable at any time."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._callbacks: tuple[ChunkCallback, ...] = ()
        source.subscribe(self)

    def add(self, callback: ChunkCallback) -> None:
        self._callbacks = (*self._callbacks, callback)

    def remove(self, callback: ChunkCallback) -> None:
        self._callbacks = tuple(c for c in self._callbacks if c is not callback)

    def __call__(self, chunk: Chunk) -> None:
        for callback in self._callbacks:
            callback(chunk)


class _Tap:
    """A started source as seen by buffers: same name/modality/health, subscriptions via its fanout."""

    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout
        self.name = fanout.source.name
        self.modality = fanout.source.modality

    def subscribe(self, callback: ChunkCallback) -> None:
        self._fanout.add(callback)

    def health(self) -> Health:
        return self._fanout.source.health()


def device_problem(health: Health, started_at: float, now: float | None = None) -> str | None:
    """Why a started device is stale (error, no sample for > 1 s), or None when it is fine."""
    now = host_now() if now is None else now
    if health.error:
        return health.error
    age = health.age(now)
    if age is None:
        return "no sample yet" if now - started_at > STALE_AFTER_S else None
    if age > STALE_AFTER_S:
        stopped = health.extra.get("state") == "stopped"
        why = "replay finished" if health.finished else ("stopped" if stopped else "device lost?")
        return f"no sample for {age:.1f} s ({why})"
    return None


@dataclass
class LiveSource:
    """A started source of the session, with its fan-out and its measured rate."""

    label: str
    source: Source
    fanout: Fanout
    started_at: float
    rate: RateMeter = field(default_factory=RateMeter)
    counted: int = field(default=0, init=False)

    def measured_rate(self, samples: int, now: float | None = None) -> float:
        """Samples per second over the last couple of seconds, from the source's sample counter ``samples``."""
        now = host_now() if now is None else now
        self.rate.add(now, samples - self.counted)
        self.counted = samples
        return self.rate.rate()


class LiveSession:
    """Sources + display buffers + (optionally) the inference engine and custom-action bank.

    Args:
        options: what ``mmg-live`` was asked for (devices, ``--jsonl``, ``--publish``, ``--calibration``, ...).
        model: the loaded model, or None for preview only.
        bank: custom actions for ``model`` (None: an empty bank is made when there is a model).
        stride_s: seconds between inference windows.

    ``on_prediction``/``on_state`` listeners are called from the engine's worker thread.
    """

    def __init__(self, options: LiveOptions, model: Any = None, bank: Any = None, stride_s: float = 0.25,
                 calibration: Any = None) -> None:
        self.options = options
        self.model = model
        self.stride_s = stride_s
        self.calibration = calibration
        if model is not None and bank is None:
            from mmg_live.prototypes import PrototypeBank

            bank = PrototypeBank(model)
        self.bank = bank
        self.config = options.devices
        self.opened: list[LiveSource] = []
        self.messages: list[str] = []
        self.display = SourceBuffers(seconds=DISPLAY_SECONDS)
        self.buffers: SourceBuffers | None = None
        self.engine: InferenceEngine | None = None
        self.sinks: list[Any] = []
        self.prediction_listeners: list[Callable[[Prediction], None]] = []
        self.state_listeners: list[Callable[[str, str | None], None]] = []
        self._enabled = {m: True for m in MODALITIES}
        self._writer: Any = None
        self._writer_lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------

    def open(self, config: DeviceConfig | None = None) -> list[str]:
        """(Re)open the devices of ``config`` (default: the current one) and restart the engine.

        Returns one line per device that could not be opened (also kept in :attr:`messages`).
        """
        self.close()
        if config is not None:
            self.config = config
        fanouts: dict[int, Fanout] = {}

        def wrap(built: list[OpenedSource]) -> None:
            for o in built:  # recording and display subscribe through the fan-out, any time
                fanout = Fanout(o.source)
                fanout.add(self._record_chunk)
                fanouts[id(o.source)] = fanout

        # the pose stream is derived only for a model that reads pose, as in mmg-live --headless
        reads_pose = self.model is not None and "pose" in self.model.trained.encoders
        config = replace(self.config, pose=self.config.pose and reads_pose)
        result = open_sources(config, self.calibration, before_start=wrap)
        self.opened = [LiveSource(o.label, o.source, fanouts[id(o.source)], o.started_at or host_now())
                       for o in result.started]
        messages = list(result.messages)
        if self.config.empty() and not messages:
            messages.append("no source: choose devices with Devices… (or give --camera/--mic/--imu/--replay)")
        self.display = SourceBuffers(seconds=DISPLAY_SECONDS)
        self.display.attach([_Tap(o.fanout) for o in self.opened])
        if self.model is not None:
            self._start_engine()
        self.messages = messages
        return messages

    def _start_engine(self) -> None:
        from mmg_live.live.publish import JsonlSink, ZmqPredictionPublisher

        if not self.sinks:
            if self.options.jsonl:
                self.sinks.append(JsonlSink(self.options.jsonl))
            if self.options.publish:
                self.sinks.append(ZmqPredictionPublisher(self.options.publish))
        self.buffers = SourceBuffers.for_model(self.model)
        streams = self.buffers.attach([_Tap(o.fanout) for o in self.opened])
        bank = self.bank if self.bank is not None and len(self.bank) else None
        self.engine = InferenceEngine(self.model, self.buffers.synchronizer, streams, stride_s=self.stride_s,
                                      device=self.model.device, prototypes=bank,
                                      on_prediction=[self._emit_prediction, *self.sinks], on_state=self._emit_state,
                                      sources=self.buffers.sources, backend=self.options.backend,
                                      onnx_dir=self.options.onnx_dir)
        for m, on in self._enabled.items():
            self.engine.set_enabled(m, on)
        self.engine.start()

    def close(self) -> None:
        """Stop the engine and every source (recording continues into nothing until stopped)."""
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        for o in self.opened:
            try:
                o.source.stop()
            except Exception:
                pass  # stopping is best effort; the device may already be gone
        self.opened = []

    def shutdown(self) -> None:
        """Close everything: recording, engine, sources, prediction sinks."""
        self.stop_recording()
        self.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                pass
        self.sinks = []

    # ---- engine -------------------------------------------------------------------------------

    def _emit_prediction(self, pred: Prediction) -> None:
        for listener in list(self.prediction_listeners):
            listener(pred)

    def _emit_state(self, state: str, reason: str | None) -> None:
        for listener in list(self.state_listeners):
            listener(state, reason)

    def set_enabled(self, modality: str, enabled: bool) -> None:
        """The privacy switch: allow or forbid a modality (kept across device changes)."""
        self._enabled[modality] = bool(enabled)
        if self.engine is not None:
            self.engine.set_enabled(modality, enabled)

    def trained_modalities(self) -> list[str]:
        """Modalities the model can use (encoder and fusion trained), whatever the sources."""
        if self.model is None:
            return []
        from mmg_live.prototypes import usable_modalities

        return usable_modalities(self.model)

    def streams(self) -> dict[str, str]:
        """``{modality: stream name}`` of the display (first started source per modality)."""
        return dict(self.display.streams)

    def pose_landmarks(self, t_frame: float, max_age_s: float = 0.5) -> np.ndarray | None:
        """``[33, 3]`` image landmarks of the newest pose estimate if it is at most ``max_age_s``
        older than the frame shown at ``t_frame`` (for the skeleton over the preview), else None."""
        for o in self.opened:
            latest = getattr(o.source, "latest", None) if o.source.modality == "pose" else None
            estimate = latest() if callable(latest) else None
            if estimate is not None and t_frame - estimate[0] <= max_age_s:
                return estimate[1]
        return None

    def display_buffer(self, modality: str):
        """The display :class:`StreamBuffer` of ``modality``'s first stream, or None before data."""
        name = self.display.streams.get(modality)
        return None if name is None else self.display.synchronizer.buffers.get(name)

    def publish_bank(self) -> None:
        """Make the bank's custom actions live in the engine at once."""
        if self.engine is not None:
            self.engine.prototypes = self.bank if self.bank is not None and len(self.bank) else None

    def longest_window_s(self) -> float:
        """The longest model window among the modalities the model can use with the open streams."""
        if self.model is None:
            return 3.0
        specs = self.model.config.specs
        usable = [m for m in self.trained_modalities() if m in self.display.streams] or self.trained_modalities()
        return max((specs[m].window_s for m in usable), default=3.0)

    # ---- recording ----------------------------------------------------------------------------

    @property
    def recording(self) -> str | None:
        """The folder being recorded into, or None."""
        w = self._writer
        return None if w is None else str(w.folder)

    def start_recording(self, folder: str | os.PathLike) -> None:
        """Record every open source into a new session folder (as ``--headless --record``)."""
        from devices.session import SessionWriter

        if self._writer is not None:
            raise RuntimeError(f"already recording into {self._writer.folder}")
        devices = {o.source.name: device_settings(o.source, o.label) for o in self.opened}
        calibration = calibration_record(self.calibration, self.options.calibration)
        writer = SessionWriter(folder, devices, calibration=calibration, video_codec=self.options.video_codec)
        with self._writer_lock:
            self._writer = writer

    def stop_recording(self) -> str | None:
        """Stop recording; returns a one-line summary, or None when not recording."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is None:
            return None
        for o in self.opened:
            h = o.source.health()
            writer.update_counters(o.source.name, samples=h.samples, dropped=h.dropped, bad_lines=h.bad_lines,
                                   gaps=h.gaps, late=h.late, reconnects=h.reconnects)
        try:
            writer.close()
        except RuntimeError as exc:
            return f"recording failed: {one_line(exc)}; what was written before is in {writer.folder}"
        counts = ", ".join(f"{name} {s.get('samples', 0)}" for name, s in writer.stats().items())
        return f"session written to {writer.folder} ({counts})"

    def _record_chunk(self, chunk: Chunk) -> None:
        writer = self._writer
        if writer is not None:
            writer.write(chunk)

