"""Training-stage mechanics that need no data set: frozen parts stay exactly as they were."""

from __future__ import annotations

import torch

from mmg_live.models.mmg import build_model
from trainer.stages import StageConfig, make_optimizer, plan_epoch, run_epoch
from trainer.windows import WindowSet

CLASSES = ["a", "b", "c", "d"]


def _imu_window_set(model, n: int = 16) -> WindowSet:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % len(CLASSES)
    shape = model.config.specs["imu"].output_shape()
    x = 3.0 * torch.randn(n, 2, *shape, generator=gen) + 5.0  # far from BatchNorm's initial statistics
    return WindowSet(tensors={"imu": x.half()}, present={"imu": torch.ones(n, dtype=torch.bool)}, labels=labels,
                     clip_ids=[f"c{i}" for i in range(n)], groups=["s0"] * n)


def _batch_norm_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in module.named_buffers() if "running" in n or "num_batches" in n}


def _one_epoch(model, freeze: list[str]) -> None:
    data = _imu_window_set(model)
    stage = StageConfig(name="t", type="supervised", modalities=["imu"], batch_size=8, lr=1e-3, epochs=1,
                        warmup_epochs=0.0, freeze=freeze)
    optimizer = make_optimizer(model, stage)
    plan = plan_epoch(stage, data, seed=0)
    run_epoch(model, stage, data, plan, optimizer, 0, len(plan.batches), len(plan.batches), seed=0,
              device=torch.device("cpu"))


def test_a_frozen_encoder_keeps_its_batch_norm_statistics_and_weights():
    torch.manual_seed(0)
    model = build_model("lite", CLASSES)
    stats = _batch_norm_buffers(model.encoders["imu"])
    assert stats, "the lite IMU encoder has BatchNorm layers"
    weights = {n: p.detach().clone() for n, p in model.encoders["imu"].named_parameters()}
    _one_epoch(model, freeze=["encoders.imu"])
    for name, before in stats.items():
        assert torch.equal(before, model.encoders["imu"].get_buffer(name)), name
    for name, before in weights.items():
        assert torch.equal(before, model.encoders["imu"].get_parameter(name)), name
    assert model.training and not model.encoders["imu"].patch_embed[0][1].training


def test_a_trained_encoder_updates_its_batch_norm_statistics():
    torch.manual_seed(0)
    model = build_model("lite", CLASSES)
    stats = _batch_norm_buffers(model.encoders["imu"])
    _one_epoch(model, freeze=[])
    changed = [n for n, b in stats.items() if not torch.equal(b, model.encoders["imu"].get_buffer(n))]
    assert len(changed) == len(stats)
