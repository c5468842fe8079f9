"""Composing the default model: one modality's parts from a donor run, shared weights untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmg_live.checkpoint import load_checkpoint, save_checkpoint
from mmg_live.live.buffer import StreamBuffer, Synchronizer
from mmg_live.live.engine import InferenceEngine
from mmg_live.models.mmg import TrainedParts, build_model
from trainer.compose import compose, main as compose_main


def _models():
    torch.manual_seed(0)
    base = build_model("lite", ["a", "b", "c"])
    base.trained = TrainedParts(["imu", "video"], ["imu", "video"], True, ["imu", "video"])
    donor = build_model("lite", [str(d) for d in range(10)])
    state = {k: v.clone() for k, v in base.state_dict().items() if not k.startswith(("classifier", "unimodal_heads"))}
    donor.load_state_dict(state, strict=False)
    with torch.no_grad():
        donor.fusion.token_proj["audio"].weight.add_(1.0)
        next(donor.encoders["audio"].parameters()).mul_(2.0)
    donor.trained = TrainedParts(["audio", "imu", "video"], ["audio"], False, [])
    specs = donor.config.specs.to_dict()
    specs["audio"]["mean"], specs["audio"]["std"] = -7.5, 3.25
    donor.config.specs = type(donor.config.specs).from_dict(specs)
    return base, donor


def test_compose_takes_the_modality_parts_and_keeps_everything_else():
    base, donor = _models()
    merged, summary = compose(base, donor, "audio")
    assert summary["tensors"] > 0
    ms, bs, ds = merged.state_dict(), base.state_dict(), donor.state_dict()
    for key in ms:
        expected = ds[key] if key.startswith(("encoders.audio.", "projections.audio.", "fusion.token_proj.audio.",
                                              "fusion.modality_embed.audio")) else bs[key]
        assert torch.equal(ms[key], expected), key
    assert merged.class_names == ["a", "b", "c"]
    assert merged.config.specs.audio.mean == -7.5 and merged.config.specs.audio.std == 3.25
    assert merged.config.specs.imu == base.config.specs.imu
    assert sorted(merged.trained.fusion) == ["audio", "imu", "video"]
    assert merged.trained.classifier_inputs() == ["imu", "video"]  # audio never reaches the base classifier


def test_compose_refuses_a_donor_that_changed_shared_weights_or_did_not_train_the_modality():
    base, donor = _models()
    with torch.no_grad():
        donor.fused_projection.weight.add_(1e-3)
    with pytest.raises(ValueError, match="changed 1 shared weights.*fused_projection"):
        compose(base, donor, "audio")
    base, donor = _models()
    donor.trained.fusion = []
    with pytest.raises(ValueError, match="did not train the audio fusion"):
        compose(base, donor, "audio")


def test_compose_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    base, donor = _models()
    save_checkpoint(tmp_path / "base.safetensors", base)
    save_checkpoint(tmp_path / "donor.safetensors", donor)
    assert compose_main([str(tmp_path / "base.safetensors"), str(tmp_path / "donor.safetensors"),
                         "--out", str(tmp_path / "out.safetensors")]) == 0
    model, info = load_checkpoint(tmp_path / "out.safetensors", device="cpu")
    assert info.trained.classifier_modalities == ["imu", "video"] and "audio" in info.trained.fusion
    assert info.training["composed_from"]["modality"] == "audio"
    assert compose_main([str(tmp_path / "base.safetensors"), str(tmp_path / "missing.safetensors"),
                         "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_engine_base_classifier_reads_only_its_modalities_custom_actions_use_all():
    from devices.base import Chunk
    from mmg_live.prototypes import PrototypeBank

    base, donor = _models()
    model, _ = compose(base, donor, "audio")
    rng = np.random.default_rng(0)
    audio = StreamBuffer("audio", 6.0, 16000.0, (1,), np.float32)

    def feed(t0: float, seconds: float) -> None:
        t = t0 + np.arange(0, seconds, 1 / 16000)
        audio.append(Chunk("audio", t, rng.normal(0, 0.1, (len(t), 1)).astype(np.float32)))

    feed(100.0, 2.0)
    engine = InferenceEngine(model, Synchronizer({"audio": audio}), {"audio": "audio"}, device="cpu", smoothing="none")
    assert engine.trained_modalities() == ["audio"]
    assert engine.step() is None  # audio alone: nothing the base classifier may read, no custom action
    assert "only used for custom actions, and there are none" in engine.stats()["reason"]
    tensors, problems, t_end = engine.capture_inputs()
    assert not problems and list(tensors) == ["audio"] and t_end == pytest.approx(102.0, abs=1e-3)
    bank = PrototypeBank(model)
    bank.add_example("kettle", tensors)
    engine.prototypes = bank
    feed(102.0, 0.5)
    pred = engine.step()
    assert pred is not None and pred.modalities == ["audio"]
    assert [e["kind"] for e in pred.top] == ["custom"] and pred.top[0]["label"] == "kettle"


def test_ensemble_class_probabilities_are_the_geometric_mean_of_fused_and_present_unimodal_heads():
    torch.manual_seed(0)
    model = build_model("lite", ["a", "b", "c"]).eval()
    specs = model.config.specs
    inputs = {m: torch.randn(3, *specs[m].output_shape()) for m in ("video", "imu")}
    present = {"video": torch.tensor([True, True, False]), "imu": torch.tensor([True, True, True])}
    with torch.inference_mode():
        enc = model.encode_batch(inputs, present)
        fused = torch.softmax(model.classifier(model.fuse(enc)), -1)
        assert torch.allclose(model.class_probabilities(enc), fused)  # default: the fused classifier
        model.config.classifier = "ensemble"
        got = model.class_probabilities(enc)
        log_f = torch.log(fused)
        heads = {m: torch.log_softmax(model.unimodal_heads[m](enc.embeddings[m]), -1) for m in ("video", "imu")}
    both = torch.softmax((log_f[:2] + heads["video"][:2] + heads["imu"][:2]) / 3, -1)
    imu_only = torch.softmax((log_f[2] + heads["imu"][2]) / 2, -1)  # row 2 has no video: its head does not count
    torch.testing.assert_close(got[:2], both, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[2], imu_only, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.sum(-1), torch.ones(3))
