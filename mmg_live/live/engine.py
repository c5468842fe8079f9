"""The live inference engine: newest synchronized window → live encoders → fusion → prediction.

:class:`InferenceEngine` runs one worker thread. When it starts it warms up every encoder and
every modality subset it may run (zero inputs, nothing emitted), so no prediction pays a
first-call cost. Then every ``stride_s`` it takes the newest window (ending at
``synchronizer.latest_time()``), decides which modalities are *usable* now, reads them through
:func:`~mmg_live.live.windowing.read_window`, runs only their encoders (batch of one,
``torch.inference_mode()``, on the model's device), fuses them, turns the result into class
probabilities (base classifier and/or a :class:`~mmg_live.prototypes.PrototypeBank`), smooths
them over time and hands a :class:`~mmg_live.live.prediction.Prediction` to ``on_prediction``
(called from the worker thread).

A modality is used only when all of these hold:

* the model's encoder AND fusion were trained on it (``model.trained``): an untrained encoder
  is never run;
* something reads it: the base classifier was trained on it
  (``model.trained.classifier_inputs()``), or there are custom actions (prototypes can be
  matched from any trained modality);
* the user has not switched it off (:meth:`InferenceEngine.set_enabled`, e.g. for privacy);
* its device reports no error (``Source.health().error``, when the engine is given the
  sources, as :class:`~mmg_live.live.source_buffers.SourceBuffers` provides them);
* its stream has not ended before the window does (a source reporting ``health().finished``,
  such as a replay past its last sample, is not used for windows ending more than one sample
  period after its last sample);
* its stream covers at least ``coverage_threshold`` of the modality's own window (the one
  coverage check, :func:`~mmg_live.modalities.require_coverage`) and the shared preprocessing
  accepts the samples.

With no usable modality the engine emits nothing; ``stats()["state"]`` is ``"idle"`` with the
reason. The worker never queues behind itself: ticks are on a fixed grid, and ticks that pass
while an inference is still running are skipped and counted (``stats()["skipped"]``), so every
prediction is about the newest data. Exceptions inside the worker are caught, counted and
reported in ``stats()``; the loop goes on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from devices.base import Source, host_now
from mmg_common import MODALITIES, one_line
from mmg_live.export.format import BACKENDS
from mmg_live.live.buffer import Synchronizer
from mmg_live.live.memory import release_free_memory
from mmg_live.live.onnx_runner import runner_for
from mmg_live.live.prediction import Prediction, PredictionCallback
from mmg_live.live.smoothing import Smoother, make_smoother
from mmg_live.live.windowing import LiveWindow, read_window
from mmg_live.modalities import ModalitySpecs, preprocess
from mmg_live.models.mmg import Encoded, MMGModel, select_device
from mmg_live.models.cpu_inference import cpu_inference_model
from mmg_live.no_action import NO_ACTION
from mmg_live.prototypes import PrototypeBank, combine, nonempty_subsets, ranked, usable_modalities


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
            (unplugged, lost) is not used even while its buffer still holds recent samples, nor
            one whose source has finished (a replay's end) for windows past its last sample.
            The first source with a ``source_time(t_host)`` method (a replay) gives each
            prediction its ``t_source``.
        trim_memory_s: every this many seconds the worker gives the C heap's free pages back to
            the OS (:func:`~mmg_live.live.memory.release_free_memory`, 0.3–7 ms); 0 or None: never.
            Without it RSS wanders by tens of MiB over a session with nothing leaked.
        backend: ``"torch"`` (default), or ``"onnxruntime"``: the encoders, fusion and classifier
            run as the ONNX export in ``onnx_dir`` (:mod:`mmg_live.live.onnx_runner`; without
            ``onnx_dir`` the model is exported once into the user's cache); CPU only.
    """

    def __init__(
        self,
        model: MMGModel,
        synchronizer: Synchronizer,
        streams: Mapping[str, str],
        stride_s: float = 0.25,
        smoothing: str | Smoother = "ema",
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
        backend: str = "torch",
        onnx_dir: str | None = None,
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
        # what windows run through: on a CPU, faster kernels with the same outputs (bank, checkpoint
        # and fingerprint stay those of self.model)
        if backend not in BACKENDS:
            raise ValueError(f"InferenceEngine: backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnxruntime":
            if target.type != "cpu":
                raise ValueError("InferenceEngine: the onnxruntime backend runs on the CPU; use --device cpu")
            self._runner: Any = runner_for(self.model, onnx_dir, threads=torch.get_num_threads())
        else:
            self._runner = cpu_inference_model(self.model) if target.type == "cpu" else self.model
        self.backend = backend
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
        self._warmup_ms: float | None = None
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
        per-modality status, latency percentiles (ms) of recent predictions and the warm-up's
        duration (``warmup_ms``, None before it ran)."""
        with self._lock:
            lat = np.asarray(self._latencies) if self._latencies else None
            return {
                "state": self._state, "reason": self._reason, "windows": self._ticks,
                "predictions": self._predictions, "skipped": self._skipped, "idle_windows": self._idle_windows,
                "errors": self._errors, "last_error": self._last_error, "memory_trims": self._memory_trims,
                "warmup_ms": self._warmup_ms,
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
        status, candidates = self._select(wanted, set(usable_modalities(self.model)), t_end)
        window = self._read(t_end, candidates, status)
        reasons = {m: st["reason"] for m, st in status.items() if st["reason"] and m not in window.tensors}
        return window.tensors, reasons, float(t_end)

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
        status, candidates = self._select(list(self.streams), needed, t_end)
        window = self._read(t_end, candidates, status)
        tensors = window.tensors
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
        select_ms = (t_pre - t_start) * 1e3 - window.fetch_ms - window.preprocess_ms
        latency = {
            "fetch": select_ms + window.fetch_ms, "preprocess": window.preprocess_ms,
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
                          coverage={m: status[m]["coverage"] for m in status}, t_source=self._source_time(t_end),
                          idle={m: st["reason"] for m, st in status.items() if not st["used"] and st["reason"]},
                          no_action=label == NO_ACTION)
        self._set_state("running", None)
        for callback in callbacks:
            try:
                callback(pred)
            except Exception as exc:  # a broken consumer must not stop inference
                self._record_error(f"on_prediction {getattr(callback, '__name__', callback)!r}: {exc}")
        return pred

    def _select(self, modalities: Sequence[str], needed: set[str],
                t_end: float) -> tuple[dict[str, dict], list[str]]:
        """Status per modality and the ones worth reading: trained, needed, enabled, streamed, healthy,
        not ended before ``t_end``."""
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
            elif m == "video" and (mismatch := self._video_kind_mismatch(name)):
                st["reason"] = mismatch
            elif ended := self._ended(name, t_end):
                st["reason"] = ended
            else:
                candidates.append(m)
        return status, candidates

    def _video_kind_mismatch(self, stream: str) -> str | None:
        """Why a camera's frames must not reach the video encoder (a colour camera and a
        depth-trained encoder, or the other way round), or None when both kinds agree or either is unknown."""
        trained = self.model.config.specs.video.trained_on
        source = self.sources.get(stream)
        kind = None if source is None else source.health().extra.get("video_kind")
        if not trained or not kind or kind == trained:
            return None
        return f"the camera delivers {kind} video and this model's video encoder learned {trained} video"

    def _device_error(self, stream: str) -> str | None:
        source = self.sources.get(stream)
        return None if source is None else source.health().error

    def _ended(self, stream: str, t_end: float) -> str | None:
        """Why a finished source's stream cannot serve a window ending at ``t_end``, or None.

        Its last sample stands for one sample period (as in the coverage measure); a window
        ending later would be scored from a stream that has stopped.
        """
        source = self.sources.get(stream)
        if source is None or not source.health().finished:
            return None
        buf = self.sync.buffers[stream]
        last = buf.latest_time()
        if last is not None and t_end <= last + 1.0 / buf.rate:
            return None
        return "stream ended before the window's end"

    def _source_time(self, t_host: float) -> float | None:
        """``t_host`` on the recording's clock, from the first source that knows it (a replay)."""
        for source in self.sources.values():
            source_time = getattr(source, "source_time", None)
            t_source = None if source_time is None else source_time(t_host)
            if t_source is not None:
                return t_source
        return None

    def _read(self, t_end: float, candidates: list[str], status: dict[str, dict]) -> LiveWindow:
        """The candidates' window through :func:`read_window`, marking coverage, liveness and reasons."""
        window = read_window(self.sync.buffers, {m: self.streams[m] for m in candidates}, self.model.config.specs,
                             t_end, self.coverage_threshold)
        for m in candidates:
            status[m]["coverage"] = window.coverage.get(m, 0.0)
            status[m]["live"] = m in window.live
            if m in window.problems:
                status[m]["reason"] = window.problems[m]
        return window

    def _infer(self, tensors: dict[str, torch.Tensor], used: list[str]) -> tuple[np.ndarray | None, Any]:
        """Encode ``used`` (a batch of one) and score them: base probabilities and custom scores."""
        inputs = {m: tensors[m].unsqueeze(0).to(self.device) for m in used}
        with torch.inference_mode():
            return self._score(self._runner.encode_batch(inputs), used)

    def _score(self, enc: Encoded, used: list[str]) -> tuple[np.ndarray | None, Any]:
        """Fuse the ``used`` modalities of ``enc`` into base-class probabilities (the ones the
        classifier reads) and custom-action scores (with a non-empty bank)."""
        bank = self.prototypes
        base = None
        readable = [m for m in used if m in self.model.trained.classifier_inputs()]
        if readable:
            base = self._runner.class_probabilities(enc, readable)[0].cpu().numpy()
        custom = bank.classify(enc, used) if bank is not None and len(bank) else None
        return base, custom

    # ---- warm-up ----------------------------------------------------------------------------

    def warm_up(self) -> float:
        """Run preprocessing, every encoder, and the fusion and scoring of every modality subset
        the engine may use, once on synthetic inputs (windows of zeros; nothing is emitted or
        smoothed), so no real prediction pays a first-call cost: lazy imports (decimating an IMU
        faster than the model's rate imports scipy, ~250 ms, on the first window it joins),
        kernel selection, allocator growth.

        The worker calls it before its first window unless it ran already; returns (and
        ``stats()["warmup_ms"]`` reports) how long it took in ms.
        """
        t0 = time.perf_counter()
        modalities = self.trained_modalities()
        specs = self.model.config.specs
        inputs = {m: _synthetic_window(specs, m).unsqueeze(0).to(self.device) for m in modalities}
        with torch.inference_mode():
            enc = self._runner.encode_batch(inputs) if inputs else None
            for subset in nonempty_subsets(modalities):  # an encoder's output does not depend on the others
                self._score(enc, list(subset))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = (time.perf_counter() - t0) * 1e3
        with self._lock:
            self._warmup_ms = elapsed
        return elapsed

    # ---- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.stats()["warmup_ms"] is None:
                self.warm_up()
        except Exception as exc:  # a failed warm-up only costs the first predictions time
            self._record_error(f"warm-up: {type(exc).__name__}: {one_line(exc, 300)}")
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
                self._record_error(f"{type(exc).__name__}: {one_line(exc, 300)}")
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


def _synthetic_window(specs: ModalitySpecs, modality: str) -> torch.Tensor:
    """A model input for ``modality`` made by the shared preprocessing from windows of zeros, at
    the model's own rate and at one that takes the resampling path (an 8 kHz microphone, a
    100 Hz IMU: decimation imports scipy on first use, ~250 ms), so the warm-up also runs
    preprocessing's lazy imports and first calls."""
    spec = specs[modality]
    if modality == "video":
        variants, shape, dtype = [30.0], (2 * spec.size, 2 * spec.size, spec.channels), np.uint8
    elif modality == "audio":
        # with frontend="speech_embedding" this also creates the process's ONNX session (~0.5 s)
        # and runs the embedding twice, so the first live window does not pay for loading it
        variants, shape, dtype = [float(spec.sample_rate), spec.sample_rate / 2.0], (1,), np.float32
    elif modality == "pose":
        variants, shape, dtype = [float(spec.rate), 2.0 * spec.rate], (33, 4), np.float32
    else:
        variants, shape, dtype = [float(spec.rate), 2.0 * spec.rate], (6,), np.float32
    tensors = []
    for rate in variants:
        n = int(round(spec.window_s * rate))
        timestamps = (np.arange(n) + 1) / rate
        tensors.append(preprocess(modality, np.zeros((n, *shape), dtype), timestamps, specs, (0.0, spec.window_s)))
    return tensors[0]
