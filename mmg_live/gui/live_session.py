"""The GUI's live pipeline, without Qt: sources, display buffers, engine, custom actions, recording.

:class:`LiveSession` opens the sources the command line names (through the same factories as
``mmg-live --headless``), keeps short display buffers for the preview, level meter and IMU traces,
runs the :class:`~mmg_live.live.engine.InferenceEngine` on its own buffers when a model is loaded
and can reopen everything with another :class:`DeviceConfig`. A device that fails to open is
reported as a one-line message and the others keep running.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from devices.base import MODALITIES, Chunk, ChunkCallback, Health, Source, host_now
from mmg_live.live.engine import InferenceEngine, Prediction, SourceBuffers

#: Seconds of history the display keeps per modality (the IMU traces show the last few seconds).
DISPLAY_SECONDS = {"video": 1.0, "audio": 1.0, "imu": 6.0}
#: A device with no sample for longer than this is stale.
STALE_AFTER_S = 1.0


def default_prototypes_path() -> Path:
    """``$XDG_DATA_HOME/mmg-live/prototypes.safetensors`` (default ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mmg-live" / "prototypes.safetensors"


def one_line(exc: BaseException) -> str:
    """An exception as one line (its message, else its type)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class DeviceConfig:
    """Which devices to open: the ``--camera/--mic/--imu/--replay/--remote`` options."""

    camera: str | None = None
    mic: str | None = None
    imu: str | None = None
    replay: str | None = None
    speed: float = 1.0
    remote: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "DeviceConfig":
        return cls(camera=getattr(args, "camera", None), mic=getattr(args, "mic", None),
                   imu=getattr(args, "imu", None), replay=getattr(args, "replay", None),
                   speed=float(getattr(args, "speed", 1.0) or 1.0), remote=list(getattr(args, "remote", None) or []))

    def factories(self, base: argparse.Namespace) -> list[tuple[str, Any]]:
        """``(label, make)`` pairs exactly as the CLI builds them (``mmg_live.cli._factories``)."""
        from mmg_live import cli

        ns = argparse.Namespace(**{"curve_server_key": None, "remote_rebase": False, **vars(base)})
        for key, value in vars(self).items():
            setattr(ns, key, value)
        return cli._factories(ns)

    def empty(self) -> bool:
        return not (self.camera is not None or self.mic is not None or self.imu or self.replay or self.remote)


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


class RateMeter:
    """Samples per second of one source over the last ``span_s`` seconds, from its sample counter."""

    def __init__(self, span_s: float = 2.0) -> None:
        self.span_s = span_s
        self._history: deque[tuple[float, int]] = deque()

    def update(self, samples: int, now: float | None = None) -> float:
        now = host_now() if now is None else now
        self._history.append((now, samples))
        while len(self._history) > 2 and now - self._history[1][0] >= self.span_s:
            self._history.popleft()
        t0, n0 = self._history[0]
        return (samples - n0) / (now - t0) if now > t0 else 0.0


def device_problem(health: Health, started_at: float, now: float | None = None) -> str | None:
    """Why a started device is stale (error, no sample for > 1 s), or None when it is fine."""
    now = host_now() if now is None else now
    if health.error:
        return health.error
    age = health.age(now)
    if age is None:
        return "no sample yet" if now - started_at > STALE_AFTER_S else None
    if age > STALE_AFTER_S:
        state = health.extra.get("state")
        why = "replay finished" if state == "finished" else ("stopped" if state == "stopped" else "device lost?")
        return f"no sample for {age:.1f} s ({why})"
    return None


@dataclass
class OpenedSource:
    """A source the session tried to start."""

    label: str
    source: Source
    fanout: Fanout
    started_at: float
    rate: RateMeter = field(default_factory=RateMeter)


class LiveSession:
    """Sources + display buffers + (optionally) the inference engine and custom-action bank.

    Args:
        args: the parsed ``mmg-live`` arguments (device options, ``--device``, ``--jsonl``, ...).
        model: the loaded model, or None for preview only.
        bank: custom actions for ``model`` (None: an empty bank is made when there is a model).
        stride_s: seconds between inference windows.

    ``on_prediction``/``on_state`` listeners are called from the engine's worker thread.
    """

    def __init__(self, args: argparse.Namespace, model: Any = None, bank: Any = None, stride_s: float = 0.25,
                 calibration: Any = None) -> None:
        self.args = args
        self.model = model
        self.stride_s = stride_s
        self.calibration = calibration
        if model is not None and bank is None:
            from mmg_live.prototypes import PrototypeBank

            bank = PrototypeBank(model)
        self.bank = bank
        self.config = DeviceConfig.from_args(args)
        self.opened: list[OpenedSource] = []
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
        messages: list[str] = []
        made: list[tuple[str, Source]] = []
        try:
            factories = self.config.factories(self.args)
        except ValueError as exc:
            factories, messages = [], [one_line(exc)]
        for label, make in factories:
            try:
                made.extend((label, src) for src in make())
            except Exception as exc:  # one bad device must not stop the others
                messages.append(_device_error(label, exc))
        from devices.zmq_stream import unique_names

        unique_names([src for _, src in made])
        if self.calibration is not None:
            from calibration.profile import ProfileApplier

            applier = ProfileApplier(self.calibration)
            made = [(label, applier.wrap(src)) for label, src in made]
        for label, src in made:
            fanout = Fanout(src)
            fanout.add(self._record_chunk)
            try:
                src.start()
            except Exception as exc:
                messages.append(_device_error(label, exc))
                continue
            self.opened.append(OpenedSource(label, src, fanout, host_now()))
        if not factories and not messages:
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
            if getattr(self.args, "jsonl", None):
                self.sinks.append(JsonlSink(self.args.jsonl))
            if getattr(self.args, "publish", None):
                self.sinks.append(ZmqPredictionPublisher(self.args.publish))
        self.buffers = SourceBuffers.for_model(self.model)
        streams = self.buffers.attach([_Tap(o.fanout) for o in self.opened])
        bank = self.bank if self.bank is not None and len(self.bank) else None
        self.engine = InferenceEngine(self.model, self.buffers.synchronizer, streams, stride_s=self.stride_s,
                                      device=self.model.device, prototypes=bank,
                                      on_prediction=[self._emit_prediction, *self.sinks], on_state=self._emit_state,
                                      sources=self.buffers.sources)
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
        from mmg_live.cli import _device_settings
        from mmg_live.live.recorder import SessionWriter

        if self._writer is not None:
            raise RuntimeError(f"already recording into {self._writer.folder}")
        devices = {o.source.name: _device_settings(o.source, o.label) for o in self.opened}
        applied = None
        if self.calibration is not None:
            applied = {"file": str(Path(self.args.calibration).resolve()) if getattr(self.args, "calibration", None)
                       else None, **self.calibration.to_dict()}
        writer = SessionWriter(folder, devices, calibration=applied,
                               video_codec=getattr(self.args, "video_codec", "ffv1") or "ffv1")
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


def _device_error(label: str, exc: BaseException) -> str:
    from mmg_live.cli import _device_error as cli_device_error

    return cli_device_error(label, exc)
