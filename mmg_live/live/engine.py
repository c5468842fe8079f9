"""The live inference engine: newest synchronized window → live encoders → fusion → prediction.

:class:`InferenceEngine` runs one worker thread. Every ``stride_s`` it takes the newest window
(ending at ``synchronizer.latest_time()``), decides which modalities are *usable* now, runs only
their encoders (batch of one, ``torch.inference_mode()``, on the model's device), fuses them,
turns the result into class probabilities (base classifier and/or a
:class:`~mmg_live.prototypes.PrototypeBank`), smooths them over time and hands a
:class:`Prediction` to ``on_prediction`` (called from the worker thread).

A modality is used only when all of these hold:

* the model's encoder AND fusion were trained on it (``model.trained``): an untrained encoder
  is never run;
* something reads it: the base classifier was trained on it
  (``model.trained.classifier_inputs()``), or there are custom actions (prototypes can be
  matched from any trained modality);
* the user has not switched it off (:meth:`InferenceEngine.set_enabled`, e.g. for privacy);
* its device reports no error (``Source.health().error``, when the engine is given the
  sources, as :class:`SourceBuffers` provides them);
* its stream covers at least ``coverage_threshold`` of the modality's own window (the same
  coverage measure as :class:`~mmg_live.live.buffer.Synchronizer`) and the shared preprocessing
  accepts the samples.

With no usable modality the engine emits nothing; ``stats()["state"]`` is ``"idle"`` with the
reason. The worker never queues behind itself: ticks are on a fixed grid, and ticks that pass
while an inference is still running are skipped and counted (``stats()["skipped"]``), so every
prediction is about the newest data. Exceptions inside the worker are caught, counted and
reported in ``stats()``; the loop goes on.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from devices.base import MODALITIES, Chunk, Source, host_now
from mmg_live.live.buffer import StreamBuffer, Synchronizer, coverage_of
from mmg_live.live.memory import release_free_memory
from mmg_live.live.windowing import FETCH_MARGIN_S, fetch_length, window_tensors
from mmg_live.modalities import PreprocessError, VideoSpec, modality_window, video_frame_indices
from mmg_live.models.mmg import MMGModel, select_device
from mmg_live.prototypes import PrototypeBank, UNKNOWN, combine, ranked, usable_modalities

STAGES = ("fetch", "preprocess", "encode_fuse", "post")


@dataclass
class Prediction:
    """One engine output.

    Attributes:
        t: end of the window (host monotonic seconds of the newest sample used).
        top: top-k ``{"label", "p", "kind"}`` (kind ``base`` or ``custom``), best first, smoothed.
        label: ``top[0]["label"]``, or ``"unknown"`` when its probability is below the threshold.
        modalities: the modalities whose encoders produced this prediction.
        latency_ms: ``total`` and per stage (``fetch``, ``preprocess``, ``encode_fuse``, ``post``).
        skipped: windows skipped so far because inference was slower than the stride.
        seq: 1 for the first prediction, then counting.
        emitted: host time at which the prediction was made (``emitted - t`` is its age).
        coverage: coverage of each considered modality's window in ``[0, 1]``.
    """

    t: float
    top: list[dict]
    label: str
    modalities: list[str]
    latency_ms: dict[str, float]
    skipped: int = 0
    seq: int = 0
    emitted: float = 0.0
    coverage: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats rounded for readability)."""
        out = asdict(self)
        out["top"] = [{**e, "p": round(float(e["p"]), 5)} for e in self.top]
        out["latency_ms"] = {k: round(float(v), 3) for k, v in self.latency_ms.items()}
        out["coverage"] = {k: round(float(v), 3) for k, v in self.coverage.items()}
        out["age_ms"] = round((self.emitted - self.t) * 1000.0, 3)
        return out

    def to_json(self) -> str:
        """One JSON object on one line: ``t``, ``top``, ``label``, ``modalities``, ``latency_ms``, ..."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


class EmaSmoother:
    """Exponential moving average of the probability vector: ``s = alpha * p + (1 - alpha) * s``.

    Restarts when the label set changes (a custom action added or removed) or after ``reset``.
    """

    def __init__(self, alpha: float = 0.5) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EmaSmoother: alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._labels: tuple[str, ...] | None = None
        self._state: np.ndarray | None = None

    def __call__(self, labels: Sequence[str], probs: np.ndarray) -> np.ndarray:
        key = tuple(labels)
        if self._state is None or key != self._labels:
            self._labels, self._state = key, np.asarray(probs, np.float64).copy()
        else:
            self._state = self.alpha * np.asarray(probs, np.float64) + (1.0 - self.alpha) * self._state
        return self._state.copy()

    def reset(self) -> None:
        self._labels, self._state = None, None


class NoSmoothing:
    """Pass probabilities through unchanged."""

    def __call__(self, labels: Sequence[str], probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs, np.float64)

    def reset(self) -> None:
        pass


def make_smoother(smoothing: str | Any, alpha: float = 0.5) -> Any:
    """``"ema"`` → :class:`EmaSmoother` (``alpha``), ``"none"`` → :class:`NoSmoothing`, or an object
    with ``__call__(labels, probs) -> probs`` and ``reset()`` as is."""
    if smoothing == "ema":
        return EmaSmoother(alpha)
    if smoothing in ("none", None):
        return NoSmoothing()
    if isinstance(smoothing, str):
        raise ValueError(f"smoothing must be 'ema' or 'none', got {smoothing!r}")
    return smoothing


PredictionCallback = Callable[[Prediction], None]


class _VideoFrameSelection:
    """The ``select`` of :meth:`StreamBuffer.window_select` for video: picks the frames
    preprocessing samples (:func:`video_frame_indices`) and keeps them, or keeps why there are
    none (``error``) when the frames cover too little of the window."""

    def __init__(self, spec: VideoSpec, window: tuple[float, float]) -> None:
        self.spec, self.window = spec, window
        self.indices: np.ndarray | None = None
        self.error: str | None = None

    def __call__(self, ts: np.ndarray) -> np.ndarray:
        try:
            self.indices = video_frame_indices(ts, self.spec, self.window)
        except PreprocessError as exc:
            self.indices, self.error = np.zeros(0, dtype=np.int64), str(exc)
        return self.indices


class InferenceEngine:
    """Worker thread turning the newest synchronized window into :class:`Prediction` s.

    Args:
        model: an :class:`MMGModel` (moved to ``device`` and put in eval mode).
        synchronizer: the buffers to read.
        streams: ``{modality: buffer name}`` to use for each modality.
        stride_s: seconds between windows.
        smoothing: ``"ema"`` (default), ``"none"`` or a smoother object (see :func:`make_smoother`).
        alpha: EMA weight of the newest window.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        coverage_threshold: minimum fraction of its window a stream must cover to be live.
        prototypes: optional :class:`PrototypeBank` of custom actions.
        on_prediction: callable(s) receiving each :class:`Prediction` on the worker thread.
        top_k: entries in ``Prediction.top``.
        unknown_threshold: below this top probability the label is ``"unknown"``; default the
            bank's threshold, or 0 without a bank.
        on_state: optional ``callable(state, reason)`` called on every state change
            (``running``/``idle``/``stopped``).
        sources: optional ``{buffer name: Source}``; a stream whose source reports an error
            (unplugged, lost) is not used even while its buffer still holds recent samples.
        trim_memory_s: every this many seconds the worker gives the C heap's free pages back to
            the OS (:func:`~mmg_live.live.memory.release_free_memory`, 0.3–7 ms); 0 or None: never.
            Without it RSS wanders by tens of MiB over a session with nothing leaked.
    """

    def __init__(
        self,
        model: MMGModel,
        synchronizer: Synchronizer,
        streams: Mapping[str, str],
        stride_s: float = 0.25,
        smoothing: str | Any = "ema",
        alpha: float = 0.5,
        device: str | torch.device = "auto",
        coverage_threshold: float = 0.6,
        prototypes: PrototypeBank | None = None,
        on_prediction: PredictionCallback | Sequence[PredictionCallback] | None = None,
        top_k: int = 5,
        unknown_threshold: float | None = None,
        on_state: Callable[[str, str | None], None] | None = None,
        sources: Mapping[str, Source] | None = None,
        trim_memory_s: float | None = 10.0,
    ) -> None:
        if not stride_s > 0:
            raise ValueError(f"InferenceEngine: stride_s must be > 0, got {stride_s}")
        if not 0.0 <= coverage_threshold <= 1.0:
            raise ValueError(f"InferenceEngine: coverage_threshold must be in [0, 1], got {coverage_threshold}")
        unknown = set(streams) - set(MODALITIES)
        if unknown:
            raise ValueError(f"InferenceEngine: unknown modalities {sorted(unknown)} in streams")
        target = select_device(device) if isinstance(device, str) else torch.device(device)
        self.model = model.to(target).eval()
        self.device = target
        self.sync = synchronizer
        self.streams = dict(streams)
        self.stride_s = float(stride_s)
        self.trim_memory_s = float(trim_memory_s or 0.0)
        self.coverage_threshold = float(coverage_threshold)
        self.smoother = make_smoother(smoothing, alpha)
        self.top_k = int(top_k)
        self._unknown_threshold = unknown_threshold
        self.prototypes = prototypes
        if on_prediction is None:
            self._callbacks: list[PredictionCallback] = []
        elif callable(on_prediction):
            self._callbacks = [on_prediction]
        else:
            self._callbacks = list(on_prediction)
        self._on_state = on_state
        self.sources = dict(sources or {})
        self._enabled = {m: True for m in MODALITIES}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_t: float | None = None
        self._state, self._reason = "stopped", None
        self._predictions = self._skipped = self._ticks = self._errors = self._idle_windows = 0
        self._memory_trims = 0
        self._last_error: str | None = None
        self._status: dict[str, dict] = {}
        self._latencies: deque[float] = deque(maxlen=500)

    # ---- control ----------------------------------------------------------------------------

    def start(self) -> "InferenceEngine":
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mmg-inference", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker and wait up to ``timeout`` s for the inference in flight to finish."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._set_state("stopped", None)

    def __enter__(self) -> "InferenceEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_listener(self, callback: PredictionCallback) -> None:
        """Also hand every prediction to ``callback`` (from the worker thread)."""
        with self._lock:
            self._callbacks = [*self._callbacks, callback]

    def set_enabled(self, modality: str, enabled: bool) -> None:
        """Allow or forbid a modality (privacy switch); takes effect at the next window."""
        if modality not in MODALITIES:
            raise ValueError(f"set_enabled: unknown modality {modality!r}; expected one of {MODALITIES}")
        with self._lock:
            self._enabled[modality] = bool(enabled)

    def enabled(self, modality: str) -> bool:
        """Whether the user allows ``modality``."""
        with self._lock:
            return self._enabled[modality]

    @property
    def unknown_threshold(self) -> float:
        if self._unknown_threshold is not None:
            return float(self._unknown_threshold)
        return self.prototypes.unknown_threshold if self.prototypes is not None else 0.0

    def trained_modalities(self) -> list[str]:
        """Stream modalities whose encoder and fusion were trained: the only ones ever run."""
        return [m for m in usable_modalities(self.model) if m in self.streams]

    def stats(self) -> dict[str, Any]:
        """State, reason, counters (windows, predictions, skipped, errors, memory trims), last error,
        per-modality status and latency percentiles (ms) of recent predictions."""
        with self._lock:
            lat = np.asarray(self._latencies) if self._latencies else None
            return {
                "state": self._state, "reason": self._reason, "windows": self._ticks,
                "predictions": self._predictions, "skipped": self._skipped, "idle_windows": self._idle_windows,
                "errors": self._errors, "last_error": self._last_error, "memory_trims": self._memory_trims,
                "modalities": {m: dict(v) for m, v in self._status.items()},
                "latency_ms": None if lat is None else {
                    "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "n": len(lat)},
            }

    def capture_inputs(self, modalities: Sequence[str] | None = None,
                       t_end: float | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str], float | None]:
        """The preprocessed window ending at ``t_end`` (default: the newest sample), for enrolment.

        Uses the same liveness rules and preprocessing as :meth:`step` (trained, switched on,
        healthy, enough coverage) restricted to ``modalities`` (default: every stream). Returns
        ``(tensors, problems, t_end)``: one tensor per usable modality (no batch dimension, on
        the CPU), the reason for each modality left out, and the window end actually used.
        """
        t_end = self.sync.latest_time() if t_end is None else float(t_end)
        if t_end is None:
            return {}, {m: "no samples yet" for m in (modalities or self.streams)}, None
        wanted = list(self.streams) if modalities is None else list(modalities)
        status, candidates = self._select(wanted, set(usable_modalities(self.model)))
        raw, rates = self._fetch(t_end, candidates, status)
        tensors, problems = window_tensors(raw, self.model.config.specs, t_end, rates) if raw else ({}, {})
        reasons = {m: st["reason"] for m, st in status.items() if st["reason"] and m not in tensors}
        reasons.update(problems)
        return tensors, reasons, float(t_end)

    # ---- one window -------------------------------------------------------------------------

    def step(self) -> Prediction | None:
        """Run one window now (what the worker does every stride); returns the prediction or None.

        Callbacks are called. Never raises for missing or bad data (that is the ``idle`` state),
        only for bugs, which the worker catches and reports.
        """
        t_start = time.perf_counter()
        t_end = self.sync.latest_time()
        if t_end is None:
            return self._idle("no samples yet")
        if self._last_t is not None and t_end <= self._last_t:
            return self._idle("no new samples since the last window")
        trained = set(usable_modalities(self.model))
        # without custom actions only the base classifier's inputs are worth encoding
        bank = self.prototypes
        needed = trained if bank is not None and len(bank) else set(self.model.trained.classifier_inputs()) & trained
        status, candidates = self._select(list(self.streams), needed)
        raw, rates = self._fetch(t_end, candidates, status)
        t_fetch = time.perf_counter()
        tensors, problems = window_tensors(raw, self.model.config.specs, t_end, rates) if raw else ({}, {})
        for m, why in problems.items():
            status[m]["reason"] = why
        t_pre = time.perf_counter()
        with self._lock:
            self._status = status
        if not tensors:
            return self._idle(self._idle_reason(status))
        used = [m for m in MODALITIES if m in tensors]
        base_probs, custom = self._infer(tensors, used)
        t_model = time.perf_counter()
        if base_probs is None and (custom is None or not custom.names):
            return self._idle("nothing to classify: the classifier is not trained and there are no custom actions")
        for m in used:
            status[m]["used"] = True
        labels, kinds, probs = combine(base_probs, self.model.class_names, custom)
        probs = self.smoother(labels, probs)
        label, top = ranked(labels, kinds, probs, self.top_k, self.unknown_threshold)
        t_post = time.perf_counter()
        latency = {
            "fetch": (t_fetch - t_start) * 1e3, "preprocess": (t_pre - t_fetch) * 1e3,
            "encode_fuse": (t_model - t_pre) * 1e3, "post": (t_post - t_model) * 1e3,
            "total": (t_post - t_start) * 1e3,
        }
        with self._lock:
            self._predictions += 1
            seq, skipped = self._predictions, self._skipped
            self._latencies.append(latency["total"])
            callbacks = list(self._callbacks)
        self._last_t = t_end
        pred = Prediction(t=float(t_end), top=top, label=label, modalities=used, latency_ms=latency,
                          skipped=skipped, seq=seq, emitted=host_now(),
                          coverage={m: status[m]["coverage"] for m in status})
        self._set_state("running", None)
        for callback in callbacks:
            try:
                callback(pred)
            except Exception as exc:  # a broken consumer must not stop inference
                self._record_error(f"on_prediction {getattr(callback, '__name__', callback)!r}: {exc}")
        return pred

    def _select(self, modalities: Sequence[str], needed: set[str]) -> tuple[dict[str, dict], list[str]]:
        """Status per modality and the ones worth fetching: trained, needed, enabled, streamed, healthy."""
        trained = set(usable_modalities(self.model))
        status: dict[str, dict] = {}
        candidates = []
        for m in modalities:
            name = self.streams.get(m)
            st = status[m] = {"trained": m in trained, "enabled": self.enabled(m), "coverage": 0.0, "live": False,
                              "used": False, "reason": None}
            if not st["trained"]:
                st["reason"] = "encoder or fusion not trained for this modality"
            elif m not in needed:
                st["reason"] = "only used for custom actions, and there are none"
            elif not st["enabled"]:
                st["reason"] = "switched off"
            elif name is None or name not in self.sync.buffers:
                st["reason"] = f"no stream {name!r}" if name else "no stream"
            elif error := self._device_error(name):
                st["reason"] = f"device error: {error}"
            else:
                candidates.append(m)
        return status, candidates

    def _device_error(self, stream: str) -> str | None:
        source = self.sources.get(stream)
        return None if source is None else source.health().error

    def _fetch(self, t_end: float, candidates: list[str], status: dict[str, dict]) -> tuple[dict, dict]:
        """Raw samples of each candidate's window (as ``synchronizer_windows``), marking liveness."""
        specs = self.model.config.specs
        if not candidates:
            return {}, {}
        length = fetch_length(specs, candidates)
        t1 = t_end + FETCH_MARGIN_S
        raw, rates = {}, {}
        for m in candidates:
            buf: StreamBuffer = self.sync.buffers[self.streams[m]]
            frames = None
            if m == "video":  # copy only the frames preprocessing samples (16 of ~100)
                frames = _VideoFrameSelection(specs.video, modality_window(specs, m, t_end))
                data, ts = buf.window_select(t1 - length, t1, frames)
            else:
                data, ts = buf.window(t1 - length, t1)
            window_s = specs[m].window_s
            inside = ts[(ts > t_end - window_s) & (ts <= t_end)]
            cov = coverage_of(inside, buf.rate, window_s)
            status[m]["coverage"] = cov
            if cov + 1e-9 < self.coverage_threshold:  # 90 samples at 50 Hz in 3 s is 60 %, not 59.99...
                status[m]["reason"] = f"covers {cov:.0%} of its {window_s:g} s window (need {self.coverage_threshold:.0%})"
                continue
            status[m]["live"] = True
            if frames is not None and frames.error:  # as a preprocessing problem would be reported
                status[m]["reason"] = frames.error
                continue
            # the picked frames with their timestamps sample to themselves in preprocess_video
            raw[m] = (data, ts[frames.indices]) if frames is not None and frames.indices is not None else (data, ts)
            rates[m] = buf.rate
        return raw, rates

    def _infer(self, tensors: dict[str, torch.Tensor], used: list[str]) -> tuple[np.ndarray | None, Any]:
        inputs = {m: tensors[m].unsqueeze(0).to(self.device) for m in used}
        bank = self.prototypes
        with torch.inference_mode():
            enc = self.model.encode_batch(inputs)
            base = None
            readable = [m for m in used if m in self.model.trained.classifier_inputs()]
            if readable:
                base = self.model.class_probabilities(enc, readable)[0].cpu().numpy()
            custom = bank.classify(enc, used) if bank is not None and len(bank) else None
        return base, custom

    # ---- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = host_now()
        next_trim = next_tick + self.trim_memory_s
        while not self._stop.is_set():
            delay = next_tick - host_now()
            if delay > 0 and self._stop.wait(delay):
                break
            with self._lock:
                self._ticks += 1
            try:
                self.step()
            except Exception as exc:  # report and keep going: one bad window must not end the app
                self._record_error(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            if self.trim_memory_s and host_now() >= next_trim:  # after the prediction went out
                release_free_memory()
                with self._lock:
                    self._memory_trims += 1
                next_trim = host_now() + self.trim_memory_s
            next_tick += self.stride_s
            now = host_now()
            if now > next_tick:  # ticks that passed while we were busy: skip them, never queue
                missed = int((now - next_tick) // self.stride_s) + 1
                next_tick += missed * self.stride_s
                with self._lock:
                    self._skipped += missed
                    self._ticks += missed

    def _idle(self, reason: str) -> None:
        with self._lock:
            self._idle_windows += 1
        self.smoother.reset()
        self._set_state("idle", reason)
        return None

    def _idle_reason(self, status: dict[str, dict]) -> str:
        if not status:
            return "no streams configured"
        parts = [f"{m}: {st['reason']}" for m, st in status.items() if st["reason"]]
        return "no usable modality (" + "; ".join(parts) + ")"

    def _set_state(self, state: str, reason: str | None) -> None:
        with self._lock:
            changed = (state, reason) != (self._state, self._reason)
            self._state, self._reason = state, reason
        if changed and self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception as exc:
                self._record_error(f"on_state: {exc}")

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = message


class SourceBuffers:
    """Ring buffers for live sources, each created from its source's first chunk.

    A buffer's sample shape (e.g. a camera's frame size) is only known once data arrives, so
    :meth:`attach` subscribes to every source and creates the stream's :class:`StreamBuffer`
    on its first chunk (rate from ``health().nominal_rate``, else ``default_rates``), then adds
    it to :attr:`synchronizer` by swapping in a new dict (readers never see it change size).
    ``streams`` maps each modality to the first stream of that modality, for the engine.
    ``seconds`` is the history held, for every stream or per modality (see :meth:`for_model`).
    """

    default_rates = {"video": 30.0, "audio": 16000.0, "imu": 50.0}

    def __init__(self, seconds: float | Mapping[str, float] = 8.0, coverage_threshold: float = 0.6) -> None:
        self.seconds = seconds if isinstance(seconds, Mapping) else {m: float(seconds) for m in MODALITIES}
        self.synchronizer = Synchronizer({}, coverage_threshold=coverage_threshold)
        self.streams: dict[str, str] = {}
        self.sources: dict[str, Source] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, model: MMGModel, slack_s: float = 0.5) -> "SourceBuffers":
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
            buf = StreamBuffer(src.modality, self.seconds[src.modality], rate, np.asarray(chunk.data).shape[1:], dtype, name=src.name)
            self.synchronizer.buffers = {**self.synchronizer.buffers, src.name: buf}
            return buf




class HeadlessInference:
    """The engine and its sinks as ``mmg-live --headless --checkpoint`` runs them.

    Loads the checkpoint (and the prototype bank), attaches ring buffers to ``sources`` (call
    before starting them) and sends every prediction to stdout as a JSON line (``stdout``),
    to a JSON-lines file (``jsonl``) and/or a ZeroMQ PUB socket (``publish``).
    Raises ``ValueError``/``OSError``/``RuntimeError`` with a one-line message when something
    cannot be opened; whatever was opened before is closed again.
    """

    def __init__(self, checkpoint: str, sources: Sequence[Source], *, device: str = "auto",
                 prototypes: str | None = None, jsonl: str | None = None, publish: str | None = None,
                 stdout: bool = True, stride_s: float = 0.25) -> None:
        import sys

        from mmg_live.checkpoint import load_checkpoint
        from mmg_live.live.publish import JsonlSink, ZmqPredictionPublisher

        model, _info = load_checkpoint(checkpoint, device)
        bank = PrototypeBank.load(prototypes, model) if prototypes else None
        self.sinks: list[Any] = []
        try:
            if stdout:
                self.sinks.append(JsonlSink(sys.stdout))
            if jsonl:
                self.sinks.append(JsonlSink(jsonl))
            if publish:
                self.sinks.append(ZmqPredictionPublisher(publish))
        except Exception:
            self.close_sinks()
            raise
        self.buffers = SourceBuffers.for_model(model)
        streams = self.buffers.attach(sources)
        self.engine = InferenceEngine(model, self.buffers.synchronizer, streams, stride_s=stride_s,
                                      device=model.device, prototypes=bank, on_prediction=self.sinks,
                                      sources=self.buffers.sources)
        usable = self.engine.trained_modalities()
        self.warning = None if usable else (
            f"{checkpoint}: trained on {usable_modalities(model) or 'no modality'}; none of the sources "
            f"({', '.join(sorted(streams)) or 'none'}) can be used, so no predictions will be made")

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> dict[str, Any]:
        """Stop the engine, close the sinks; returns the engine's final stats."""
        self.engine.stop()
        self.close_sinks()
        return self.engine.stats()

    def close_sinks(self) -> None:
        for sink in self.sinks:
            if getattr(sink, "name", None) != "<stdout>":
                sink.close()


__all__ = ["InferenceEngine", "Prediction", "EmaSmoother", "NoSmoothing", "make_smoother", "SourceBuffers",
           "HeadlessInference", "STAGES", "UNKNOWN"]
