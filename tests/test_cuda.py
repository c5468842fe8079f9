"""CUDA checks: the models, the live engine and a training step on the GPU match the CPU.

Skipped unless ``torch.cuda.is_available()`` (CI has no GPU; ``scripts/device_check.sh`` runs
this file on a CUDA machine). Nothing here needs the data sets: every input is synthetic.

* ``lite`` and ``paper`` forward on CUDA for all 7 modality subsets with finite outputs, and
  ``lite`` gives the CPU's logits (fp32, TF32 off) within tolerance;
* :class:`InferenceEngine` with ``device="cuda"`` on a synthetic Synchronizer gives the CPU
  engine's probabilities within 1e-3 (base classes and a custom action);
* a few supervised steps of :func:`trainer.stages.run_epoch` with bf16 autocast (what
  ``trainer.run`` does on CUDA) run on the GPU and lower the loss.
"""

from __future__ import annotations

import copy
import itertools
import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest
import torch

#: ``cuda``; set MMG_CUDA_TEST_DEVICE=cpu to check these tests' own logic on a machine without a GPU.
DEVICE = os.environ.get("MMG_CUDA_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")

MODALITIES = ("video", "audio", "imu")
SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(MODALITIES, r)]
CLASSES = [f"class{i}" for i in range(6)]


@contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for matmuls and convolutions (so CUDA fp32 is comparable with the CPU)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def trained_model(config: str, classes: list[str] = CLASSES):
    """An untrained ``config`` model marked trained on all three modalities, in eval mode (CPU)."""
    from mmg_live.models.mmg import build_model

    torch.manual_seed(0)
    model = build_model(config, classes)
    mods = list(model.modalities)
    model.trained.encoders, model.trained.fusion, model.trained.classifier = list(mods), list(mods), True
    return model.eval()


def random_inputs(model, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """One preprocessed-shaped random batch per modality (CPU, fp32)."""
    gen = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, *model.config.specs[m].output_shape(), generator=gen) for m in model.modalities}


@pytest.mark.parametrize("config", ["lite", "paper"])
def test_forward_on_cuda_for_every_subset(config):
    if config == "paper":
        pytest.importorskip("pytorchvideo", reason="the paper config's MViT-B needs pytorchvideo")
    model = trained_model(config)
    inputs = random_inputs(model)
    cpu_model = copy.deepcopy(model) if config == "lite" else None
    gpu_model = model.to(DEVICE)
    with torch.inference_mode(), exact_fp32():
        for subset in SUBSETS:
            out = gpu_model({m: inputs[m].to(DEVICE) for m in subset})
            assert out.logits.device.type == DEVICE
            assert out.logits.shape == (2, len(CLASSES))
            assert torch.isfinite(out.logits).all() and torch.isfinite(out.fused).all(), subset
            for m in subset:
                assert torch.isfinite(out.embeddings[m]).all(), (subset, m)
            if cpu_model is not None:
                ref = cpu_model({m: inputs[m] for m in subset})
                torch.testing.assert_close(out.logits.cpu(), ref.logits, rtol=1e-3, atol=1e-3, msg=f"{subset}")
                torch.testing.assert_close(out.fused.cpu(), ref.fused, rtol=1e-3, atol=1e-3, msg=f"{subset}")


def synthetic_sync(model, t_end: float = 100.0, seconds: float = 4.0):
    """A Synchronizer holding ``seconds`` of video (120x160 gray), 16 kHz audio and 50 Hz IMU."""
    from devices.base import Chunk
    from mmg_live.live.buffer import StreamBuffer, Synchronizer

    rng = np.random.default_rng(0)
    rates = {"video": 30.0, "audio": float(model.config.specs["audio"].sample_rate), "imu": 50.0}
    shapes = {"video": (120, 160, 1), "audio": (1,), "imu": (6,)}
    buffers = []
    for m in MODALITIES:
        n = int(rates[m] * seconds)
        ts = t_end - seconds + (np.arange(n) + 1) / rates[m]
        if m == "video":
            data = rng.integers(0, 255, (n, *shapes[m]), dtype=np.uint8)
        else:
            data = rng.normal(0, 0.1 if m == "audio" else 1.0, (n, *shapes[m])).astype(np.float32)
        buf = StreamBuffer(m, seconds + 2.0, rates[m], shapes[m], data.dtype, name=m)
        buf.append(Chunk(m, ts, data, m))
        buffers.append(buf)
    return Synchronizer(buffers)


def engine_probabilities(model, device: str) -> tuple[dict[str, float], list[str]]:
    """One engine step on ``device`` with a one-action prototype bank: ``{label: p}`` and modalities."""
    from mmg_live.live.engine import InferenceEngine
    from mmg_live.prototypes import PrototypeBank

    sync = synthetic_sync(model)
    streams = {m: m for m in MODALITIES}
    bank = PrototypeBank(model, unknown_threshold=0.0)
    engine = InferenceEngine(model, sync, streams, smoothing="none", device=device, prototypes=bank,
                             top_k=len(model.class_names) + 1)
    t_end = sync.latest_time()
    tensors, problems, _ = engine.capture_inputs(t_end=t_end - 0.5)
    assert set(tensors) == set(MODALITIES), problems
    bank.add_example("custom", tensors)
    pred = engine.step()
    assert pred is not None, engine.stats()
    return {e["label"]: float(e["p"]) for e in pred.top}, pred.modalities


def test_engine_on_cuda_matches_cpu():
    model = trained_model("lite")
    cpu_model, gpu_model = model, copy.deepcopy(model)
    with exact_fp32():
        cpu, cpu_mods = engine_probabilities(cpu_model, "cpu")
        gpu, gpu_mods = engine_probabilities(gpu_model, DEVICE)
    assert gpu_model.device.type == DEVICE and cpu_model.device.type == "cpu"
    assert cpu_mods == gpu_mods == ["video", "audio", "imu"]
    assert set(cpu) == set(gpu) == set(CLASSES) | {"custom"}
    assert abs(sum(cpu.values()) - 1.0) < 1e-6
    for label in cpu:
        assert abs(cpu[label] - gpu[label]) <= 1e-3, (label, cpu[label], gpu[label])


def tiny_window_set(model, n: int = 16, n_windows: int = 2, classes: int = 4):
    """A synthetic :class:`trainer.windows.WindowSet` whose inputs depend on the label."""
    from trainer.windows import WindowSet

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    tensors = {}
    for m in MODALITIES:
        shape = model.config.specs[m].output_shape()
        x = 0.5 * torch.randn(n, n_windows, *shape, generator=gen)
        x += labels.view(n, 1, *([1] * len(shape))).float() - classes / 2  # separable by level
        tensors[m] = x.half()  # as build_window_set stores them
    present = {m: torch.ones(n, dtype=torch.bool) for m in MODALITIES}
    return WindowSet(tensors=tensors, present=present, labels=labels, clip_ids=[f"c{i}" for i in range(n)],
                     groups=["s0"] * n)


def test_supervised_steps_with_bf16_autocast_lower_the_loss_on_cuda():
    from trainer.stages import StageConfig, make_optimizer, plan_epoch, run_epoch

    model = trained_model("lite", CLASSES[:4]).to(DEVICE)
    data = tiny_window_set(model)
    stage = StageConfig(name="cuda-check", type="supervised", modalities=list(MODALITIES), batch_size=8, lr=1e-3,
                        warmup_epochs=0.0, epochs=6, label_smoothing=0.0)
    optimizer = make_optimizer(model, stage)
    device = torch.device(DEVICE)
    step, losses = 0, []
    for epoch in range(stage.epochs):
        plan = plan_epoch(stage, data, seed=epoch)
        total = stage.epochs * len(plan.batches)
        step, stats = run_epoch(model, stage, data, plan, optimizer, step, total, len(plan.batches), seed=epoch,
                                device=device, amp=True)
        losses.append(stats["loss"])
    assert step == stage.epochs * 2
    assert all(np.isfinite(losses)), losses
    assert all(p.device.type == DEVICE and p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < 0.8 * losses[0], losses
