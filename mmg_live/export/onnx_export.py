"""Write a trained :class:`~mmg_live.models.mmg.MMGModel` as ONNX graphs that onnxruntime runs.

One graph per trained encoder (``encoder_<modality>.onnx``: the preprocessed window ``x`` in,
``tokens``, ``pooled`` and the shared-space ``embedding`` out) and one for the fusion and the
classifier (``scorer.onnx``: every classifier modality's outputs and a ``present`` mask in, the
base-class ``probabilities`` and the ``fused`` embedding out; a modality left out of a prediction
is fed as zeros with ``present`` false, which the fusion's attention mask ignores). Every graph has
a dynamic batch axis. ``export.json`` beside them holds the checkpoint's header (config, specs,
class names, trained parts), the weights' digest and each graph's input and output shapes, so a
runtime needs nothing else. Exporting uses torch's ``torch.export`` based exporter (onnxscript).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmg_common import atomic_write_bytes
from mmg_live.checkpoint import weights_digest
from mmg_live.export.format import EXPORT_FORMAT, EXPORT_VERSION, MANIFEST
from mmg_live.models.mmg import MMGModel

OPSET = 18
EXAMPLE_BATCH = 2  # not 0 or 1, which torch.export would specialise the batch axis to


class EncoderGraph(nn.Module):
    """One modality's encoder and projection: ``x → (tokens, pooled, embedding)``."""

    def __init__(self, model: MMGModel, modality: str) -> None:
        super().__init__()
        self.encoder = model.encoders[modality]
        self.projection = model.projections[modality]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens, pooled = self.encoder(x)
        return tokens, pooled, self.projection(pooled)


class ScorerGraph(nn.Module):
    """The fusion and the classifier over ``modalities``: for each, in that order, its tokens,
    pooled output, embedding and bool ``present`` ``[B]``; returns ``(probabilities, fused)``.
    Every row needs one present modality (the engine only scores windows that have one)."""

    def __init__(self, model: MMGModel, modalities: list[str]) -> None:
        super().__init__()
        if model.fusion is None:
            raise ValueError("ONNX export: the 'mean' fusion ablation is not exported; use attention or mlp")
        self.model = model
        self.modalities = list(modalities)

    def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, pooled, embeddings, present = {}, {}, {}, {}
        for i, m in enumerate(self.modalities):
            tokens[m], pooled[m], embeddings[m], present[m] = flat[4 * i:4 * i + 4]
        fused = self.model.fused_projection(self.model.fusion(tokens, pooled, present))
        return self.model.probabilities_of(fused, embeddings, present), fused


def exportable_modalities(model: MMGModel) -> list[str]:
    """Modalities whose encoder was trained (the others are placeholders no prediction uses)."""
    return [m for m in model.modalities if m in model.trained.encoders]


def _example_input(model: MMGModel, modality: str) -> torch.Tensor:
    shape = model.config.specs[modality].output_shape()
    return torch.randn((EXAMPLE_BATCH,) + tuple(shape))


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
            output_names: list[str], varargs: bool = False) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    per_input = tuple({0: batch} for _ in args)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, optimize=True,
                                    input_names=input_names, output_names=output_names,
                                    dynamic_shapes=(per_input,) if varargs else per_input, verbose=False)
    if program is None:
        raise RuntimeError(f"ONNX export of {path.name} returned no program")
    program.save(str(path))


def export_onnx(model: MMGModel, out_dir: str | Path) -> Path:
    """Export ``model`` (on any device; exported from a CPU copy) into ``out_dir``; returns the
    manifest's path. Existing files of an earlier export there are replaced."""
    import copy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cpu = copy.deepcopy(model).cpu().eval()
    modalities = exportable_modalities(cpu)
    if not modalities:
        raise ValueError("ONNX export: the model has no trained encoder")
    encoders: dict[str, Any] = {}
    outputs: dict[str, tuple[torch.Tensor, ...]] = {}
    for m in modalities:
        graph = EncoderGraph(cpu, m)
        x = _example_input(cpu, m)
        with torch.no_grad():
            outputs[m] = graph(x)
        path = out / f"encoder_{m}.onnx"
        _export(graph, (x,), path, ["x"], ["tokens", "pooled", "embedding"])
        encoders[m] = {"file": path.name, "input": list(x.shape[1:]),
                       "tokens": list(outputs[m][0].shape[1:]), "pooled": list(outputs[m][1].shape[1:]),
                       "embedding": list(outputs[m][2].shape[1:])}
    scored = [m for m in modalities if m in cpu.trained.classifier_inputs()]
    scorer = None
    if scored:
        args: list[torch.Tensor] = []
        names: list[str] = []
        for m in scored:
            present = torch.ones(EXAMPLE_BATCH, dtype=torch.bool)
            args += [*outputs[m], present]
            names += [f"{m}.tokens", f"{m}.pooled", f"{m}.embedding", f"{m}.present"]
        path = out / "scorer.onnx"
        _export(ScorerGraph(cpu, scored), tuple(args), path, names, ["probabilities", "fused"], varargs=True)
        scorer = {"file": path.name, "modalities": scored, "inputs": names}
    manifest = {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "opset": OPSET,
        "weights_sha256": weights_digest(cpu),
        "config": cpu.config.to_dict(), "class_names": list(cpu.class_names), "trained": cpu.trained.to_dict(),
        "encoders": encoders, "scorer": scorer,
    }
    return atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())
