"""The live engine's ONNX backend: a model exported by :mod:`mmg_live.export.onnx_export`, run
by onnxruntime.

:class:`OnnxRunner` answers the two calls the engine makes of a model per window,
``encode_batch`` and ``class_probabilities``, with the same types as
:class:`~mmg_live.models.mmg.MMGModel` (the prototype bank keeps reading :class:`Encoded`), so the
engine swaps it in for the PyTorch model with ``backend="onnxruntime"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mmg_common import one_line
from mmg_live.export.format import EXPORT_FORMAT, EXPORT_VERSION
from mmg_live.export.format import MANIFEST as EXPORT_MANIFEST
from mmg_live.models.mmg import Encoded


class OnnxExportError(ValueError):
    """An ONNX export folder that cannot be used; the message names the folder and the problem."""


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise OnnxExportError(f"{path}: not a usable ONNX graph ({one_line(exc, limit=200)})") from None


class OnnxRunner:
    """An exported model's encoders and scorer in onnxruntime sessions.

    Args:
        folder: an export folder (``mmg-export onnx``).
        threads: onnxruntime intra-op threads per session.
    """

    def __init__(self, folder: str | os.PathLike, threads: int = 1) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / EXPORT_MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise OnnxExportError(f"{self.folder}: no {EXPORT_MANIFEST}; write one with "
                                  "`mmg-export onnx --checkpoint CKPT DIR`") from None
        except (OSError, ValueError) as exc:
            raise OnnxExportError(f"{manifest_path}: unreadable ({one_line(exc, limit=200)})") from None
        if self.manifest.get("format") != EXPORT_FORMAT:
            raise OnnxExportError(f"{manifest_path}: not an mmg-live ONNX export")
        if self.manifest.get("format_version") != EXPORT_VERSION:
            raise OnnxExportError(f"{manifest_path}: export format version {self.manifest.get('format_version')} "
                                  f"(this mmg-live reads {EXPORT_VERSION}); export the checkpoint again")
        self.weights_sha256 = str(self.manifest.get("weights_sha256", ""))
        self.encoder_info: dict[str, dict[str, Any]] = self.manifest["encoders"]
        self.encoders = {m: _session(self.folder / info["file"], threads) for m, info in self.encoder_info.items()}
        scorer = self.manifest.get("scorer")
        self.scored: list[str] = list(scorer["modalities"]) if scorer else []
        self.scorer = _session(self.folder / scorer["file"], threads) if scorer else None

    def encode_batch(self, inputs: Mapping[str, torch.Tensor],
                     present: Mapping[str, torch.Tensor] | None = None) -> Encoded:
        """Run the encoders of ``inputs`` (every row present; ``present`` must be None or all true)."""
        if present is not None and not all(bool(mask.all()) for mask in present.values()):
            raise ValueError("OnnxRunner.encode_batch: every row must be present")
        enc = Encoded()
        for m, x in inputs.items():
            if m not in self.encoders:
                raise ValueError(f"OnnxRunner: the export has no {m} encoder (it has {sorted(self.encoders)})")
            tokens, pooled, embedding = self.encoders[m].run(None, {"x": x.detach().cpu().numpy()})
            enc.tokens[m], enc.pooled[m] = torch.from_numpy(tokens), torch.from_numpy(pooled)
            enc.embeddings[m] = torch.from_numpy(embedding)
            enc.present[m] = torch.ones(len(x), dtype=torch.bool)
        return enc

    def class_probabilities(self, enc: Encoded, modalities: Sequence[str] | None = None) -> torch.Tensor:
        """Base-class probabilities ``[B, C]`` from the encoded modalities (or the given subset of
        those the classifier reads): the others go in as zeros marked absent."""
        if self.scorer is None:
            raise ValueError(f"{self.folder}: the export has no scorer (the model's classifier reads no modality)")
        chosen = [m for m in enc.present if (modalities is None or m in modalities) and m in self.scored]
        if not chosen:
            raise ValueError(f"class_probabilities: the classifier reads none of {list(modalities or enc.present)}")
        batch = len(enc.present[chosen[0]])
        feed: dict[str, np.ndarray] = {}
        for m in self.scored:
            info = self.encoder_info[m]
            if m in chosen:
                feed[f"{m}.tokens"] = enc.tokens[m].numpy()
                feed[f"{m}.pooled"] = enc.pooled[m].numpy()
                feed[f"{m}.embedding"] = enc.embeddings[m].numpy()
                feed[f"{m}.present"] = enc.present[m].numpy()
            else:
                feed[f"{m}.tokens"] = np.zeros((batch, *info["tokens"]), np.float32)
                feed[f"{m}.pooled"] = np.zeros((batch, *info["pooled"]), np.float32)
                feed[f"{m}.embedding"] = np.zeros((batch, *info["embedding"]), np.float32)
                feed[f"{m}.present"] = np.zeros(batch, bool)
        probabilities, _fused = self.scorer.run(None, feed)
        return torch.from_numpy(probabilities)


def export_cache_folder(weights_sha256: str) -> Path:
    """Where ``backend="onnxruntime"`` keeps the export of a checkpoint it exported itself."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mmg-live" / "onnx" / hashlib.sha256(weights_sha256.encode()).hexdigest()[:16]


def runner_for(model: Any, folder: str | os.PathLike | None = None, threads: int = 1) -> OnnxRunner:
    """An :class:`OnnxRunner` for ``model``: from ``folder`` (refused when it holds another model's
    export), or from this user's cache, exporting the model there first when it is not yet."""
    from mmg_live.checkpoint import weights_digest

    digest = weights_digest(model)
    if folder is None:
        folder = export_cache_folder(digest)
        if not (Path(folder) / EXPORT_MANIFEST).exists():
            from mmg_live.export.onnx_export import export_onnx

            export_onnx(model, folder)
    runner = OnnxRunner(folder, threads)
    if runner.weights_sha256 != digest:
        raise OnnxExportError(f"{folder}: exported from other weights than this checkpoint; "
                              "export it again with `mmg-export onnx --checkpoint CKPT DIR`")
    return runner
