"""PrototypeBank: enrol from video+IMU, recognise from any subset, mixing, persistence, bad files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmg_live.models.mmg import build_model
from mmg_live.prototypes import (CustomScores, PrototypeBank, PrototypeError, combine, embed, model_fingerprint,
                                 nonempty_subsets, ranked)

CLASSES = ["walk", "sit"]


def make_model(seed: int = 0, trained=("video", "imu")):
    torch.manual_seed(seed)
    model = build_model("lite", CLASSES).eval()
    model.trained.encoders = list(trained)
    model.trained.fusion = list(trained)
    model.trained.classifier = True
    return model


def imu_window(kind: str, gen: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """Two clearly different motions: a 1.5 Hz wave on accel x / gyro y, or a steady turn."""
    t = torch.arange(150) / 50.0
    x = torch.zeros(6, 150)
    if kind == "wave":
        x[0] = 2 * torch.sin(2 * math.pi * 1.5 * t)
        x[4] = 1.5 * torch.cos(2 * math.pi * 1.5 * t)
    else:
        x[2], x[5] = 1.0, -2.0
    return x + noise * torch.randn(x.shape, generator=gen)


def video_window(kind: str, gen: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """A bright patch moving left→right, or a static square, on a dark background."""
    v = torch.full((1, 16, 64, 64), -1.0)
    for f in range(16):
        if kind == "wave":
            v[0, f, 20:36, 10 + 2 * f:22 + 2 * f] = 2.0
        else:
            v[0, f, 40:60, 40:60] = 1.0 + 0.05 * f
    return v + noise * torch.randn(v.shape, generator=gen)


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def bank(model):
    gen = torch.Generator().manual_seed(1)
    bank = PrototypeBank(model)
    for kind in ("wave", "stir"):
        for i in range(2):
            stored = bank.add_example(kind, {"video": video_window(kind, gen), "imu": imu_window(kind, gen)},
                                      meta={"session": "s1", "t0": float(i), "t1": float(i) + 3.0})
            assert stored == ["video", "imu", "video+imu"]
    return bank


def test_the_trainer_embeds_with_the_same_function():
    """One embedding for enrolment, matching and meta-training: the trainer imports this one."""
    import trainer.stages

    assert trainer.stages.embed is embed
    assert nonempty_subsets(["imu", "video"]) == [("video",), ("imu",), ("video", "imu")]


def test_enrolled_from_video_imu_recognised_from_imu_alone(bank):
    gen = torch.Generator().manual_seed(3)
    assert bank.names() == ["wave", "stir"] and bank.counts() == {"wave": 2, "stir": 2}
    for kind, other in (("wave", "stir"), ("stir", "wave")):
        scores = bank.classify({"imu": imu_window(kind, gen)})
        i, j = scores.names.index(kind), scores.names.index(other)
        assert scores.subsets == ["imu", "imu"]
        assert scores.distances[i] < 0.1 < scores.distances[j]
        assert scores.probs[i] > 0.99 and scores.gate > 0.9
        label, top = ranked(*combine(None, [], scores), 5, bank.unknown_threshold)
        assert label == kind and top[0]["kind"] == "custom"
        both = bank.classify({"imu": imu_window(kind, gen), "video": video_window(kind, gen)})
        assert both.subsets == ["video+imu", "video+imu"] and both.probs[i] > 0.9
        # the same query restricted to the IMU out of an encoded video+imu batch
        only_imu = bank.classify(bank._encode({"imu": imu_window(kind, gen), "video": video_window(kind, gen)}),
                                 ["imu"])
        assert only_imu.subsets == ["imu", "imu"] and only_imu.probs[i] > 0.99


def test_untrained_modality_is_never_used(model):
    bank = PrototypeBank(model)
    gen = torch.Generator().manual_seed(4)
    with pytest.raises(PrototypeError, match="none of \\['audio'\\] is usable"):
        bank.add_example("clap", {"audio": torch.zeros(100, 128)})
    stored = bank.add_example("clap", {"audio": torch.zeros(100, 128), "imu": imu_window("wave", gen)})
    assert stored == ["imu"]


def test_names_rename_remove_and_clashes(model):
    gen = torch.Generator().manual_seed(5)
    bank = PrototypeBank(model)
    bank.add_example("a", {"imu": imu_window("wave", gen)})
    bank.add_example("b", {"imu": imu_window("stir", gen)})
    bank.rename("a", "wave")
    assert bank.names() == ["wave", "b"]
    assert bank.remove("b") == 1 and bank.names() == ["wave"]
    for bad, why in (("walk", "clashes with a base class"), ("unknown", "reserved"), ("", "non-empty")):
        with pytest.raises(PrototypeError, match=why):
            bank.add_example(bad, {"imu": imu_window("wave", gen)})
    with pytest.raises(PrototypeError, match="no custom action 'zzz'"):
        bank.remove("zzz")
    with pytest.raises(PrototypeError, match="expected one window"):
        bank.add_example("c", {"imu": torch.zeros(2, 6, 150)})


def test_combine_mixes_base_and_custom_as_documented():
    custom = CustomScores(["x", "y"], np.array([0.1, 0.9]), np.array([0.9, 0.1]), gate=0.75)
    labels, kinds, probs = combine(np.array([0.6, 0.4]), ["walk", "sit"], custom)
    assert labels == ["walk", "sit", "x", "y"] and kinds == ["base", "base", "custom", "custom"]
    np.testing.assert_allclose(probs, [0.25 * 0.6, 0.25 * 0.4, 0.75 * 0.9, 0.75 * 0.1])
    assert probs.sum() == pytest.approx(1.0)
    label, top = ranked(labels, kinds, probs, top_k=2, unknown_threshold=0.5)
    assert label == "x" and [e["label"] for e in top] == ["x", "walk"]
    label, _ = ranked(labels, kinds, probs, top_k=2, unknown_threshold=0.7)
    assert label == "unknown"
    # without a base classifier only the gated custom mass is listed: far queries become unknown
    far = CustomScores(["x"], np.array([1.5]), np.array([1.0]), gate=0.01)
    labels, kinds, probs = combine(None, [], far)
    assert ranked(labels, kinds, probs, 5, 0.4)[0] == "unknown"


def test_gate_rejects_a_query_far_from_every_prototype(model):
    gen = torch.Generator().manual_seed(6)
    bank = PrototypeBank(model, radius=0.5, temperature=0.05)
    bank.add_example("wave", {"imu": imu_window("wave", gen)})
    near = bank.classify({"imu": imu_window("wave", gen)})
    far = bank.classify({"imu": imu_window("stir", gen)})
    assert near.gate > 0.99 and far.gate < 0.01
    rank = lambda scores: ranked(*combine(None, [], scores), 5, bank.unknown_threshold)[0]  # noqa: E731
    assert rank(near) == "wave" and rank(far) == "unknown"


def test_save_load_round_trip(bank, model, tmp_path):
    path = bank.save(tmp_path / "protos.safetensors")
    loaded = PrototypeBank.load(path, model)
    assert loaded.names() == bank.names() and loaded.counts() == bank.counts()
    assert (loaded.temperature, loaded.radius, loaded.unknown_threshold) == (
        bank.temperature, bank.radius, bank.unknown_threshold)
    assert loaded._examples[1].meta == {"session": "s1", "t0": 1.0, "t1": 4.0}
    gen = torch.Generator().manual_seed(7)
    query = {"imu": imu_window("stir", gen), "video": video_window("stir", gen)}
    enc = bank._encode(query)
    for mods in (["imu"], ["video"], ["video", "imu"]):
        a, b = bank.classify(enc, mods), loaded.classify(enc, mods)
        np.testing.assert_allclose(a.distances, b.distances, rtol=1e-6, atol=1e-7)
        assert a.gate == pytest.approx(b.gate)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves nothing behind


def _assert_one_line_error(path, model, match):
    with pytest.raises(PrototypeError) as err:
        PrototypeBank.load(path, model)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert match in message, message


def test_corrupt_or_mismatched_files_give_one_line_errors(bank, model, tmp_path):
    good = bank.save(tmp_path / "good.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all" * 10)
    _assert_one_line_error(garbage, model, "not a readable prototype file")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _assert_one_line_error(truncated, model, "not a readable prototype file")
    _assert_one_line_error(tmp_path / "missing.safetensors", model, "not found")
    # another checkpoint (same architecture, other weights) and another embedding size
    other = make_model(seed=1)
    assert model_fingerprint(other) != model_fingerprint(model)
    _assert_one_line_error(good, other, "made with a different checkpoint")
    from mmg_live.models.registry import get_config

    cfg = get_config("lite")
    cfg.embed_dim = 64
    small = build_model(cfg, CLASSES)
    _assert_one_line_error(good, small, "embeddings are 128-d but the model's are 64-d")
    # a checkpoint file is not a prototype bank
    from mmg_live.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "model.safetensors", model)
    _assert_one_line_error(ckpt, model, "without prototype metadata")


@pytest.mark.parametrize("fusion", ["attention", "mean"])
def test_add_examples_batched_equals_one_by_one(fusion):
    """Batched enrolment (one encoder batch, every subset fused at once) stores the same
    embeddings as enrolling the examples one at a time, for mixed modality sets."""
    torch.manual_seed(0)
    from mmg_live.models.registry import get_config

    config = get_config("lite")
    if fusion == "mean":
        config.fusion = {"kind": "mean"}
    model = build_model(config, CLASSES).eval()
    model.trained.encoders = model.trained.fusion = ["video", "imu"]
    gen = torch.Generator().manual_seed(3)
    examples = [{"video": video_window("wave", gen), "imu": imu_window("wave", gen)} for _ in range(3)]
    examples.append({"imu": imu_window("stir", gen)})
    one, batched = PrototypeBank(model), PrototypeBank(model)
    for ex in examples:
        one.add_example("act", ex)
    keys = batched.add_examples("act", examples, [{"k": i} for i in range(4)])
    assert keys == [["video", "imu", "video+imu"]] * 3 + [["imu"]]
    assert batched.counts() == one.counts() == {"act": 4}
    for a, b in zip(one._examples, batched._examples):
        assert a.modalities == b.modalities and sorted(a.embeddings) == sorted(b.embeddings)
        for key in a.embeddings:
            torch.testing.assert_close(a.embeddings[key], b.embeddings[key], atol=2e-5, rtol=0)
    query = {"imu": imu_window("wave", gen)}
    np.testing.assert_allclose(one.classify(query).probs, batched.classify(query).probs, atol=1e-5)
    with pytest.raises(PrototypeError, match="none of"):
        batched.add_examples("act", [{"audio": torch.zeros(100, 128)}])
    assert batched.counts() == {"act": 4}  # nothing stored from a failed call
