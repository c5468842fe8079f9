"""The engine and its sinks as ``mmg-live --headless`` runs them."""

from __future__ import annotations

import sys
from typing import Any, Sequence

from devices.base import Source
from mmg_live.checkpoint import load_checkpoint
from mmg_live.live.engine import InferenceEngine
from mmg_live.live.publish import JsonlSink, ZmqPredictionPublisher
from mmg_live.live.source_buffers import SourceBuffers
from mmg_live.prototypes import PrototypeBank, usable_modalities


class HeadlessInference:
    """The engine and its sinks as ``mmg-live --headless`` runs them.

    Loads the checkpoint (and the prototype bank), attaches ring buffers to ``sources`` (call
    before starting them), warms the engine up (:meth:`InferenceEngine.warm_up`) and sends every
    prediction to stdout as a JSON line (``stdout``), to a JSON-lines file (``jsonl``) and/or a
    ZeroMQ PUB socket (``publish``).
    Raises ``ValueError``/``OSError``/``RuntimeError`` with a one-line message when something
    cannot be opened; whatever was opened before is closed again.
    """

    def __init__(self, checkpoint: str, sources: Sequence[Source], *, device: str = "auto",
                 prototypes: str | None = None, jsonl: str | None = None, publish: str | None = None,
                 stdout: bool = True, stride_s: float = 0.25, backend: str = "torch",
                 onnx_dir: str | None = None) -> None:
        model, _info = load_checkpoint(checkpoint, "cpu" if backend == "onnxruntime" else device)
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
                                      sources=self.buffers.sources, backend=backend, onnx_dir=onnx_dir)
        # now, before the sources start: a replay's first windows must not wait for it
        self.engine.warm_up()
        usable = self.engine.trained_modalities()
        self.warning = None if usable else (
            f"{checkpoint}: trained on {usable_modalities(model) or 'no modality'}; none of the sources "
            f"({', '.join(sorted(streams)) or 'none'}) can be used, so no predictions will be made")

    def start(self) -> None:
        """Start the engine's worker."""
        self.engine.start()

    def stop(self) -> dict[str, Any]:
        """Stop the engine, close the sinks; returns the engine's final stats."""
        self.engine.stop()
        self.close_sinks()
        return self.engine.stats()

    def close_sinks(self) -> None:
        """Close every sink but stdout."""
        for sink in self.sinks:
            if getattr(sink, "name", None) != "<stdout>":
                sink.close()
