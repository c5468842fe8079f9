"""Training-stage mechanics that need no data set: frozen parts stay exactly as they were."""

from __future__ import annotations

import torch

from mmg_live.models.mmg import build_model
from trainer.stage_config import StageConfig
from trainer.stages import make_optimizer, plan_epoch, run_epoch
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


def test_random_rotations_are_proper_and_bounded():
    from trainer.augment import random_rotations

    r = random_rotations(64, 30.0, torch.Generator().manual_seed(1))
    eye = torch.eye(3).expand(64, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(64), atol=1e-5)
    angle = torch.rad2deg(torch.acos(((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert angle.max() <= 30.0 + 1e-3 and angle.max() > 20.0  # bounded, and not all tiny


def test_rotate_imu_turns_accel_and_gyro_in_physical_units():
    from trainer.augment import random_rotations, rotate_imu

    gen = torch.Generator().manual_seed(2)
    mean = torch.tensor([-0.6, -0.3, -0.1, 5.0, -3.0, -0.5])
    std = torch.tensor([0.7, 0.5, 0.6, 90.0, 110.0, 115.0])
    phys = torch.randn(4, 6, 20, generator=gen) * std.view(1, 6, 1) + mean.view(1, 6, 1)
    x = (phys - mean.view(1, 6, 1)) / std.view(1, 6, 1)
    assert torch.allclose(rotate_imu(x, torch.eye(3).expand(4, 3, 3), mean, std), x, atol=1e-5)
    r = random_rotations(4, 45.0, gen)
    turned = rotate_imu(x, r, mean, std) * std.view(1, 6, 1) + mean.view(1, 6, 1)
    for b in range(4):
        for part in (slice(0, 3), slice(3, 6)):  # accel, gyro: each turned by the same rotation
            assert torch.allclose(turned[b, part], r[b] @ phys[b, part], atol=1e-3)
            assert torch.allclose(turned[b, part].norm(dim=0), phys[b, part].norm(dim=0), rtol=1e-4)
    assert not torch.allclose(turned, phys, atol=1e-2)


def test_imu_rotation_stage_option_changes_only_what_it_turns_on():
    from trainer.augment import augment_inputs

    x = torch.randn(8, 6, 150, generator=torch.Generator().manual_seed(3))
    stats = (torch.zeros(6), torch.ones(6))
    plain = StageConfig.from_dict({"name": "p", "imu_noise": 0.0})
    turned = StageConfig.from_dict({"name": "r", "imu_noise": 0.0, "imu_rotation": 20.0})
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment_inputs({"imu": x}, plain.augment, gen, stats)["imu"], x)  # off: no change, no draws
    out = augment_inputs({"imu": x}, turned.augment, gen, stats)["imu"]
    assert not torch.allclose(out, x)
    assert torch.allclose(out[:, :3].norm(dim=1), x[:, :3].norm(dim=1), atol=1e-4)  # stats (0, 1): norms kept
    try:
        augment_inputs({"imu": x}, turned.augment, gen, None)
    except ValueError as exc:
        assert "imu_rotation" in str(exc)
    else:
        raise AssertionError("imu_rotation without statistics must fail")


def _grads_of_supervised_loss(stage: StageConfig) -> dict[str, torch.Tensor]:
    from trainer.stages import supervised_loss
    torch.manual_seed(0)
    model = build_model("lite", CLASSES)
    gen = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(6, *model.config.specs[m].output_shape(), generator=gen) for m in ("video", "imu")}
    present = {m: torch.ones(6, dtype=torch.bool) for m in inputs}
    loss, _ = supervised_loss(model, inputs, present, torch.arange(6) % len(CLASSES), stage)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def _touched(grads: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(g is not None and bool(g.abs().sum() > 0) for n, g in grads.items() if n.startswith(prefix))


def test_fusion_detach_keeps_the_fused_classifier_loss_out_of_the_encoders():
    only_fused = dict(name="t", modalities=["video", "imu"], unimodal_weight=0.0)
    attached = _grads_of_supervised_loss(StageConfig(**only_fused))
    detached = _grads_of_supervised_loss(StageConfig(**only_fused, fusion_detach=True))
    for grads in (attached, detached):  # the fused head learns either way
        assert _touched(grads, "fusion.") and _touched(grads, "classifier.")
    assert _touched(attached, "encoders.video") and _touched(attached, "encoders.imu")
    assert not _touched(detached, "encoders.") and not _touched(detached, "projections.")
    # the unimodal heads still train the encoders when the fusion is detached
    with_heads = _grads_of_supervised_loss(StageConfig(name="t", modalities=["video", "imu"], fusion_detach=True))
    assert _touched(with_heads, "encoders.video") and _touched(with_heads, "encoders.imu")


def test_fusion_detach_sends_the_distillation_through_the_students_own_head():
    stage = dict(name="t", modalities=["video", "imu"], label_modalities=["video"], unimodal_weight=0.0,
                 ce_weight=1e-9, distill_weight=1.0, freeze=["encoders.imu", "projections.imu", "unimodal_heads.imu"])
    attached = _grads_of_supervised_loss(StageConfig.from_dict(stage))
    detached = _grads_of_supervised_loss(StageConfig.from_dict({**stage, "fusion_detach": True}))
    assert _touched(attached, "encoders.video") and not _touched(attached, "unimodal_heads.video")
    assert _touched(detached, "encoders.video") and _touched(detached, "unimodal_heads.video")
    assert not _touched(detached, "encoders.imu")  # the teacher gets no gradient
