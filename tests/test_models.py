"""MMGModel: any modality subset, per-sample masks, absent data never leaks, paper sizes."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmg_common import MODALITIES
from mmg_live.models.mmg import MMGModel, build_model, select_device
from mmg_live.models.profile import count_params, fvcore_gflops
from mmg_live.models.registry import MMGConfig, get_config

CLASSES = [f"class{i}" for i in range(5)]
SUBSETS = [s for r in range(1, len(MODALITIES) + 1) for s in itertools.combinations(MODALITIES, r)]


def _inputs(model: MMGModel, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    specs = model.config.specs
    return {m: torch.randn(batch, *specs[m].output_shape(), generator=gen) for m in model.modalities}


@pytest.fixture(scope="module")
def lite_model() -> MMGModel:
    torch.manual_seed(0)
    return build_model("lite", CLASSES).eval()


@pytest.fixture(scope="module")
def paper_model() -> MMGModel:
    torch.manual_seed(0)
    return build_model("paper", CLASSES).eval()


@pytest.mark.parametrize("name", ["lite", "paper"])
def test_every_nonempty_subset_forward(name, request):
    model = request.getfixturevalue(f"{name}_model")
    batch = 2 if name == "lite" else 1
    full = _inputs(model, batch)
    assert len(SUBSETS) == 2 ** len(MODALITIES) - 1 == 15
    d = model.config.embed_dim
    with torch.inference_mode():
        for subset in SUBSETS:
            out = model({m: full[m] for m in subset})
            assert out.fused.shape == (batch, d)
            assert out.logits.shape == (batch, len(CLASSES))
            assert set(out.embeddings) == set(subset)
            for m in subset:
                assert out.embeddings[m].shape == (batch, d)
                assert out.unimodal_logits[m].shape == (batch, len(CLASSES))
            assert torch.isfinite(out.fused).all() and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("fusion", ["attention", "mlp", "mean"])
def test_mixed_subset_batch_equals_one_by_one(fusion):
    config = get_config("lite")
    config.fusion = {"kind": fusion, "dim": 64} if fusion != "attention" else config.fusion
    torch.manual_seed(1)
    model = MMGModel(config, CLASSES).eval()
    batch = len(SUBSETS)
    inputs = _inputs(model, batch, seed=3)
    present = {m: torch.tensor([m in s for s in SUBSETS]) for m in MODALITIES}
    with torch.inference_mode():
        mixed = model(inputs, present)
        for i, subset in enumerate(SUBSETS):
            single = model({m: inputs[m][i:i + 1] for m in subset})
            torch.testing.assert_close(mixed.fused[i:i + 1], single.fused, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(mixed.logits[i:i + 1], single.logits, atol=2e-5, rtol=1e-4)
            for m in subset:
                torch.testing.assert_close(mixed.embeddings[m][i:i + 1], single.embeddings[m], atol=2e-5, rtol=1e-4)
            for m in set(MODALITIES) - set(subset):
                assert not bool(mixed.present[m][i])
                assert float(mixed.embeddings[m][i].abs().sum()) == 0.0


@pytest.mark.parametrize("fusion", ["attention", "mlp", "mean"])
def test_absent_modality_data_does_not_change_output(lite_model, fusion):
    model = lite_model
    if fusion != "attention":
        config = get_config("lite")
        config.fusion = {"kind": fusion, "dim": 64}
        model = MMGModel(config, CLASSES).eval()
    inputs = _inputs(model, 3)
    present = {"video": torch.tensor([True, False, True]), "imu": torch.ones(3, dtype=torch.bool),
               "audio": torch.tensor([False, False, True])}
    with torch.inference_mode():
        before = model(inputs, present)
        changed = dict(inputs)
        changed["video"] = inputs["video"].clone()
        changed["video"][1] = torch.randn_like(changed["video"][1]) * 100
        changed["audio"] = inputs["audio"].clone()
        changed["audio"][:2] = 1e6
        after = model(changed, present)
    torch.testing.assert_close(before.fused[:2], after.fused[:2], atol=0, rtol=0)
    torch.testing.assert_close(before.logits[:2], after.logits[:2], atol=0, rtol=0)


def test_fuse_subset_matches_forward_on_that_subset(lite_model):
    """Fusing a subset of an encoded batch equals running the model on that subset alone."""
    inputs = _inputs(lite_model, 3)
    present = {"video": torch.tensor([True, False, True]), "imu": torch.tensor([True, True, False])}
    with torch.inference_mode():
        enc = lite_model.encode_batch({m: inputs[m] for m in present}, present)
        fused_imu = lite_model.fuse(enc, ["imu"])
        alone = lite_model({"imu": inputs["imu"][:2]}).fused
    torch.testing.assert_close(fused_imu[:2], alone, atol=2e-5, rtol=1e-4)
    assert float(fused_imu[2].abs().sum()) == 0.0  # no IMU in sample 2


def test_missing_modality_changes_output(lite_model):
    """Sanity: the fusion does use a present modality (the above test could not pass vacuously)."""
    inputs = _inputs(lite_model, 1)
    with torch.inference_mode():
        both = lite_model({"video": inputs["video"], "imu": inputs["imu"]}).fused
        imu_only = lite_model({"imu": inputs["imu"]}).fused
    assert float((both - imu_only).abs().max()) > 1e-3


def test_forward_errors(lite_model):
    inputs = _inputs(lite_model, 2)
    with pytest.raises(ValueError, match="at least one modality"):
        lite_model({})
    with pytest.raises(ValueError, match=r"samples \[1\] have no modality"):
        lite_model({"imu": inputs["imu"]}, {"imu": torch.tensor([True, False])})
    with pytest.raises(ValueError, match="batch sizes differ"):
        lite_model({"imu": inputs["imu"], "video": inputs["video"][:1]})


def test_backward_reaches_only_present_encoders():
    torch.manual_seed(0)
    model = build_model("lite", CLASSES).train()
    inputs = _inputs(model, 4)
    out = model({"video": inputs["video"], "imu": inputs["imu"]})
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])).backward()
    grads = {m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders[m].parameters())
             for m in MODALITIES}
    assert grads == {"video": True, "imu": True, "audio": False, "pose": False}


def test_config_round_trip():
    for name in ("lite", "paper"):
        config = get_config(name)
        assert MMGConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_classifier_kind_is_a_config_field_also_read_from_old_headers(tmp_path):
    """``classifier`` is typed and saved in the header; an older header kept it in a free-form
    ``extra`` dict (as the shipped model's did before its header was rewritten) and loads into
    the field."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from mmg_live.assets import default_checkpoint_path
    from mmg_live.checkpoint import load_checkpoint, save_checkpoint

    def header(path) -> dict:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata())

    def header_config(path) -> dict:
        return json.loads(header(path)["mmg_live"])["config"]

    shipped = default_checkpoint_path()
    assert header_config(shipped)["classifier"] == "ensemble" and "extra" not in header_config(shipped)
    old = header(shipped)
    meta = json.loads(old["mmg_live"])
    meta["config"]["extra"] = {"classifier": meta["config"].pop("classifier")}  # the older layout
    legacy = tmp_path / "legacy.safetensors"
    save_file(load_file(str(shipped)), str(legacy), metadata={**old, "mmg_live": json.dumps(meta)})
    assert header_config(legacy)["extra"] == {"classifier": "ensemble"} and "classifier" not in header_config(legacy)
    model, _ = load_checkpoint(legacy, device="cpu")
    assert model.config.classifier == "ensemble"
    saved = save_checkpoint(tmp_path / "resaved.safetensors", model)
    assert header_config(saved)["classifier"] == "ensemble" and "extra" not in header_config(saved)
    assert load_checkpoint(saved, device="cpu")[0].config.classifier == "ensemble"
    assert get_config("lite").classifier == "fused"
    values = get_config("lite").to_dict()
    with pytest.raises(ValueError, match="classifier must be one of"):
        MMGConfig.from_dict({**values, "classifier": "vote"})
    with pytest.raises(ValueError, match="unknown extra keys \\['colour'\\]"):
        MMGConfig.from_dict({**values, "extra": {"colour": "red"}})


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        select_device("tpu")


# The seed's encoder table (params in millions, GFLOPs by fvcore).
PAPER_TABLE = {"video": (36.50, 70.50), "audio": (87.03, 42.08), "imu": (15.55, 1.65)}


def test_paper_config_matches_seed_table(paper_model):
    specs = paper_model.config.specs
    with torch.inference_mode():
        for m, (params_m, gflops) in PAPER_TABLE.items():
            encoder = paper_model.encoders[m]
            got_params = count_params(encoder) / 1e6
            got_gflops = fvcore_gflops(encoder, (torch.randn(1, *specs[m].output_shape()),))
            assert got_params == pytest.approx(params_m, rel=0.10), m
            assert got_gflops == pytest.approx(gflops, rel=0.10), m


def test_lite_has_20x_fewer_flops_than_paper(lite_model, paper_model):
    def total(model):
        specs = model.config.specs
        with torch.inference_mode():
            return sum(fvcore_gflops(model.encoders[m], (torch.randn(1, *specs[m].output_shape()),))
                       for m in model.modalities)
    assert total(paper_model) / total(lite_model) >= 20


def test_ast_cnn_stem_tokens_and_errors():
    from mmg_live.models.audio import ASTEncoder

    torch.manual_seed(0)
    enc = ASTEncoder(100, 128, dim=64, depth=1, heads=2, stem="cnn", cnn_stages=4, pool="mean").eval()
    fbank = torch.randn(3, 100, 128)
    tokens, pooled = enc(fbank)
    assert tokens.shape == (3, (128 >> 4) * (100 >> 4), 64) and pooled.shape == (3, 64)
    torch.testing.assert_close(pooled, tokens.mean(dim=1))
    # each token sees a local patch: changing the last 20 frames leaves the first time columns alone
    changed = fbank.clone()
    changed[:, 80:] += 5.0
    stem_a = enc.patch_embed(fbank.transpose(1, 2).unsqueeze(1))
    stem_b = enc.patch_embed(changed.transpose(1, 2).unsqueeze(1))
    torch.testing.assert_close(stem_a[..., :3], stem_b[..., :3])
    assert not torch.allclose(stem_a[..., -1], stem_b[..., -1])
    with pytest.raises(ValueError, match="too small for 8 CNN stages"):
        ASTEncoder(100, 128, stem="cnn", cnn_stages=8)
    with pytest.raises(ValueError, match="stem must be"):
        ASTEncoder(100, 128, stem="conv")


@pytest.mark.parametrize("frames,mels", [(100, 128), (101, 127), (37, 50)])
def test_ast_strided_first_stage_halves_like_the_pool(frames, mels):
    from mmg_live.models.audio import ASTEncoder

    torch.manual_seed(0)
    enc = ASTEncoder(frames, mels, dim=64, depth=1, heads=2, stem="cnn", cnn_stages=3, cnn_width=16,
                     cnn_strided_first=True, pool="mean").eval()
    first = enc.patch_embed[0][0]
    assert first.stride == (2, 2) and first.out_channels == 16
    assert [stage[0].out_channels for stage in enc.patch_embed] == [16, 32, 64]
    tokens, pooled = enc(torch.randn(2, frames, mels))
    assert tokens.shape == (2, (mels >> 3) * (frames >> 3), 64) and torch.isfinite(pooled).all()
    plain = ASTEncoder(frames, mels, dim=64, depth=1, heads=2, stem="cnn", cnn_stages=3, cnn_width=16)
    assert plain(torch.randn(2, frames, mels))[0].shape == tokens.shape


def test_lite_audio_is_a_projection_over_the_speech_embedding(lite_model):
    from mmg_live.models.speech import SpeechProjection
    audio = lite_model.encoders["audio"]
    assert isinstance(audio, SpeechProjection)
    assert count_params(audio) < 1.5e6


def test_lite_fbank_audio_is_the_cnn_stem_ast():
    audio = build_model("lite_fbank", CLASSES).encoders["audio"]
    assert isinstance(audio.patch_embed, torch.nn.Sequential)
    assert count_params(audio) < 1.5e6


def test_each_part_is_initialised_from_its_own_seed():
    """torch.manual_seed fixes the model; changing one encoder leaves every other part's init alone."""
    import copy

    def state(cfg):
        torch.manual_seed(0)
        return build_model(cfg, ["a", "b"]).state_dict()

    lite = get_config("lite")
    other = copy.deepcopy(lite)
    other.encoders["audio"] = {"kind": "speech_projection", "dim": 96, "hidden": 256}  # a different audio encoder
    a, b, again = state(lite), state(other), state(lite)
    assert all(torch.equal(a[k], again[k]) for k in a)  # same seed, same model
    audio_dependent = ("encoders.audio", "projections.audio", "unimodal_heads.audio", "fusion")
    kept = [k for k in a if not k.startswith(audio_dependent)]
    assert kept and all(torch.equal(a[k], b[k]) for k in kept)
    assert any(k.startswith("encoders.imu") for k in kept) and any(k.startswith("classifier") for k in kept)
    torch.manual_seed(1)
    c = build_model(lite, ["a", "b"]).state_dict()
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])  # another seed, another model


def test_mean_fusion_averages_unit_embeddings():
    """The zero-shot fusion: a classifier on it reads directions, so one modality's scale cannot tip it."""
    cfg = get_config("lite")
    cfg.fusion = {"kind": "mean"}
    torch.manual_seed(0)
    model = build_model(cfg, ["a", "b", "c"]).eval()
    inputs = {"imu": torch.randn(3, 6, 150), "video": torch.randn(3, 1, 16, 64, 64)}
    with torch.no_grad():
        enc = model.encode_batch(inputs, {"imu": torch.tensor([True, True, False]),
                                          "video": torch.tensor([True, False, True])})
        fused = model.fuse(enc)
        unit = {m: torch.nn.functional.normalize(e, dim=-1) for m, e in enc.embeddings.items()}
        torch.testing.assert_close(fused[0], (unit["imu"][0] + unit["video"][0]) / 2)
        torch.testing.assert_close(fused[1], unit["imu"][1])
        torch.testing.assert_close(fused[2], unit["video"][2])
        assert torch.allclose(fused[1].norm(), torch.tensor(1.0))
        before = model.fuse(model.encode_batch(inputs))
        model.projections["video"].weight.mul_(7.0)
        model.projections["video"].bias.mul_(7.0)
        after = model.fuse(model.encode_batch(inputs))
    torch.testing.assert_close(after, before)  # 7x longer video embeddings, same fused vector


def test_centred_mean_fusion_subtracts_each_modality_centre():
    """``"centre": true``: unit embedding minus the modality's centre, turned by its map, back on the
    sphere, then averaged; an absent modality still adds nothing; without the flag no centres."""
    import torch.nn.functional as F

    plain_cfg = get_config("lite")
    plain_cfg.fusion = {"kind": "mean"}
    torch.manual_seed(0)
    plain = build_model(plain_cfg, ["a", "b", "c"]).eval()
    assert not plain.centred and not any(k.startswith("modality_") for k in plain.state_dict())
    with pytest.raises(ValueError, match="centre"):
        plain.set_modality_centres({"imu": torch.zeros(plain.config.embed_dim)})

    cfg = get_config("lite")
    cfg.fusion = {"kind": "mean", "centre": True}
    torch.manual_seed(0)
    model = build_model(cfg, ["a", "b", "c"]).eval()
    assert model.centred and model.state_dict()["modality_centres"].shape == (len(model.modalities), cfg.embed_dim)
    d = cfg.embed_dim
    inputs = {"imu": torch.randn(3, 6, 150), "video": torch.randn(3, 1, 16, 64, 64)}
    with torch.no_grad():  # centres not estimated yet (zeros): exactly the uncentred fusion
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("modality_")})
        assert torch.equal(model.fuse(model.encode_batch(inputs)), plain.fuse(plain.encode_batch(inputs)))
    centres = {"imu": torch.full((d,), 0.05), "video": torch.linspace(-0.2, 0.2, d)}
    turn, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(1)))
    model.set_modality_centres(centres, {"video": turn})
    with pytest.raises(ValueError, match="shape"):
        model.set_modality_centres({"imu": torch.zeros(d + 1)})
    with pytest.raises(ValueError, match="rotation of 'video' has shape"):
        model.set_modality_centres({}, {"video": torch.eye(d + 1)})
    with pytest.raises(ValueError, match="no encoder"):
        model.set_modality_centres({"depth": torch.zeros(d)})
    inputs = {"imu": torch.randn(3, 6, 150), "video": torch.randn(3, 1, 16, 64, 64)}
    with torch.no_grad():
        enc = model.encode_batch(inputs, {"imu": torch.tensor([True, True, False]),
                                          "video": torch.tensor([True, False, True])})
        fused = model.fuse(enc)
        maps = {"imu": torch.eye(d), "video": turn}
        unit = {m: F.normalize((F.normalize(e, dim=-1) - centres[m]) @ maps[m], dim=-1)
                for m, e in enc.embeddings.items()}
        torch.testing.assert_close(fused[0], (unit["imu"][0] + unit["video"][0]) / 2)
        torch.testing.assert_close(fused[1], unit["imu"][1])  # video absent: its -centre is not added
        torch.testing.assert_close(fused[2], unit["video"][2])
        # the same weights without centres give a different embedding (the centres are used)
        assert not torch.allclose(plain.fuse(plain.encode_batch(inputs)), model.fuse(model.encode_batch(inputs)))


def test_cpu_inference_form_of_the_lite_video_cnn_gives_the_same_outputs() -> None:
    """The engine runs the lite video CNN folded into oneDNN form: same tokens and pooled vector,
    the trained model untouched; models without such an encoder (paper) are returned as they are."""
    from mmg_live.models.cpu_inference import cpu_inference_model
    from mmg_live.models.video import OneDnnSmall3DCNN, Small3DCNN

    torch.manual_seed(0)
    model = build_model("lite", ["a", "b"])
    for module in model.modules():  # BatchNorm statistics other than the initial 0/1
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    assert cpu_inference_model(model) is model  # training mode: nothing to fold yet
    model.eval()
    fast = cpu_inference_model(model)
    assert isinstance(fast.encoders["video"], OneDnnSmall3DCNN)
    assert isinstance(model.encoders["video"], Small3DCNN)
    spec = model.config.specs.video
    x = torch.rand(2, spec.channels, spec.frames, spec.size, spec.size)
    with torch.inference_mode():
        want_tokens, want_pooled = model.encoders["video"](x)
        got_tokens, got_pooled = fast.encoders["video"](x)
    assert got_tokens.shape == want_tokens.shape and got_pooled.shape == want_pooled.shape
    assert torch.allclose(got_tokens, want_tokens, atol=1e-4) and torch.allclose(got_pooled, want_pooled, atol=1e-4)
    paper = build_model("paper", ["a", "b"]).eval()
    assert cpu_inference_model(paper) is paper


def test_inference_threads_leave_a_core_to_capture_and_pose() -> None:
    from mmg_live.live.threads import default_inference_threads, set_inference_threads

    before = torch.get_num_threads()
    assert default_inference_threads() == max(1, before - 1)
    assert set_inference_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError):
        set_inference_threads(0)
