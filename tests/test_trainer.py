"""Training mechanics on small real subsets: loss goes down, resume is exact, corrupt files skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmg_live.checkpoint import load_checkpoint
from mmg_live.models.mmg import select_device
from trainer.recipe import InitEntry, Recipe, load_recipe
from trainer.run import RunContext, train


def _imu_recipe(epochs: int = 3) -> dict:
    return {
        "name": "test-imu", "config": "lite", "modalities": ["imu"], "classes": "all",
        "train_groups": ["1"], "test_groups": ["2"], "window_offsets": [0.0, 0.2], "seed": 3, "cache": False,
        "stages": [{"name": "imu", "type": "supervised", "modalities": ["imu"], "epochs": epochs, "lr": 2e-3,
                    "warmup_epochs": 0, "batch_size": 16}],
    }


def _ctx(recipe: dict, data: Path, out: Path, **kw) -> RunContext:
    return RunContext(Recipe.from_dict(recipe), "utd-mhad", data, out, select_device("cpu"), **kw)


def test_two_epochs_lower_the_loss_on_real_data(utd_mhad_dir, tmp_path):
    recipe = _imu_recipe(epochs=2)
    final = train(_ctx(recipe, utd_mhad_dir, tmp_path / "run"))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    losses = [h["loss"] for h in state["history"]]
    assert len(losses) == 2 and losses[1] < losses[0]
    model, info = load_checkpoint(final, device="cpu")
    assert info.trained.encoders == ["imu"] and info.trained.classifier
    assert len(info.class_names) == 27
    assert (tmp_path / "run" / "stage-imu.safetensors").is_file()
    assert any((tmp_path / "run" / "tb").iterdir())


def test_resume_continues_from_the_saved_epoch(utd_mhad_dir, tmp_path):
    recipe = _imu_recipe(epochs=3)
    full = train(_ctx(recipe, utd_mhad_dir, tmp_path / "full"))
    partial_dir = tmp_path / "partial"
    train(_ctx(recipe, utd_mhad_dir, partial_dir, max_epochs=1))
    state = json.loads((partial_dir / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] > 0 and not (partial_dir / "model.safetensors").exists()
    resumed = train(_ctx(recipe, utd_mhad_dir, partial_dir))
    history = json.loads((partial_dir / "state.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # epoch 1 was not run again
    a, _ = load_checkpoint(full, device="cpu")
    b, _ = load_checkpoint(resumed, device="cpu")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_eval_every_only_changes_which_epochs_log_the_test_accuracy(utd_mhad_dir, tmp_path):
    recipe = _imu_recipe(epochs=3)
    runs = {n: train(_ctx(recipe, utd_mhad_dir, tmp_path / f"every{n}", eval_every=n)) for n in (1, 2, 0)}
    for n, logged in ((1, [1, 2, 3]), (2, [2, 3]), (0, [3])):
        history = json.loads((tmp_path / f"every{n}" / "state.json").read_text())["history"]
        assert [h["epoch"] for h in history if "test_top1" in h] == logged
    first, _ = load_checkpoint(runs[1], device="cpu")
    last_only, _ = load_checkpoint(runs[0], device="cpu")
    for key, value in first.state_dict().items():  # evaluating does not disturb training
        assert torch.equal(last_only.state_dict()[key], value), key


def test_resume_refuses_a_different_recipe(utd_mhad_dir, tmp_path):
    train(_ctx(_imu_recipe(epochs=1), utd_mhad_dir, tmp_path / "run", max_epochs=1))
    other = _imu_recipe(epochs=1)
    other["seed"] = 99
    with pytest.raises(ValueError, match="different recipe"):
        train(_ctx(other, utd_mhad_dir, tmp_path / "run"))


def test_resume_refuses_a_checkpoint_of_another_model_config(utd_mhad_dir, tmp_path):
    """E.g. the lite IMU encoder changed since the run started: a clear error, not a state-dict dump."""
    import copy

    from mmg_live.checkpoint import save_checkpoint
    from mmg_live.models.mmg import MMGModel

    recipe = _imu_recipe(epochs=2)
    run = tmp_path / "run"
    train(_ctx(recipe, utd_mhad_dir, run, max_epochs=1))
    old, _ = load_checkpoint(run / "last.safetensors", device="cpu")
    config = copy.deepcopy(old.config)
    config.encoders["imu"] = {"kind": "imu_transformer", "patch": 10, "dim": 128, "depth": 3, "heads": 4,
                              "stem": "conv"}
    save_checkpoint(run / "last.safetensors", MMGModel(config, old.class_names))
    with pytest.raises(ValueError, match="different model config"):
        train(_ctx(recipe, utd_mhad_dir, run))


def test_corrupt_file_is_skipped_and_counted(utd_mhad_dir, tmp_path):
    root = tmp_path / "utd"
    (root / "Inertial").mkdir(parents=True)
    (root / "Depth").mkdir()
    real = sorted((utd_mhad_dir / "Inertial").glob("a*_s1_t1_inertial.mat"))[:6]
    for f in real:  # links, not copies: the dataset stays in place
        (root / "Inertial" / f.name).symlink_to(f)
        depth = utd_mhad_dir / "Depth" / f.name.replace("inertial", "depth")
        (root / "Depth" / depth.name).symlink_to(depth)
    bad = root / "Inertial" / "a27_s1_t1_inertial.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, truncated" + b"\0" * 40)
    (root / "Depth" / "a27_s1_t1_depth.mat").symlink_to(utd_mhad_dir / "Depth" / "a27_s1_t1_depth.mat")
    recipe = _imu_recipe(epochs=1)
    recipe["eval_each_epoch"] = False
    train(_ctx(recipe, root, tmp_path / "run"))
    from trainer.datasets import load_clips

    loaded = load_clips("utd-mhad", root, ["1"], ["imu"])
    assert len(loaded.clips) == 6
    assert len(loaded.skipped) == 1 and "a27_s1_t1" in loaded.skipped[0][0] + loaded.skipped[0][1]


def test_recipe_overrides():
    recipe = load_recipe("unimodal_imu", ["stages.*.epochs=2", "stages.0.lr=0.01", 'fusion={"kind": "mlp", "dim": 64}',
                                           "table.label=abc"])
    assert recipe.stages[0].epochs == 2 and recipe.stages[0].lr == 0.01
    assert recipe.fusion["kind"] == "mlp" and recipe.table.label == "abc"
    with pytest.raises(ValueError, match="key=value"):
        load_recipe("unimodal_imu", ["nonsense"])
    with pytest.raises(FileNotFoundError, match="available"):
        load_recipe("no_such_recipe")


def test_train_cli_rejects_a_negative_eval_every_before_touching_data(tmp_path, capsys):
    from trainer.train_cli import main

    for value, message in (("-1", "argument --eval-every: must be >= 0, got -1"),
                           ("two", "argument --eval-every: expected a whole number >= 0, got 'two'")):
        with pytest.raises(SystemExit) as exc:
            main(["unimodal_imu", "--dataset", "utd-mhad", "--data", str(tmp_path / "absent"),
                  "--out", str(tmp_path / "run"), "--eval-every", value])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


def test_every_shipped_recipe_is_valid():
    recipes = sorted(Path(__file__).resolve().parent.parent.joinpath("trainer", "recipes").glob("*.json"))
    assert len(recipes) >= 2
    for path in recipes:
        recipe = load_recipe(str(path))  # every stage checked on the way
        assert recipe.stages, path


def test_distilled_video_stage_keeps_the_frozen_imu_teacher(utd_mhad_dir, tmp_path):
    """The video specialist's recipe shape: IMU from an earlier run, frozen, as alignment and soft-label target."""
    from safetensors.torch import load_file

    imu_final = train(_ctx(_imu_recipe(epochs=1), utd_mhad_dir, tmp_path / "imu"))
    recipe = {
        "name": "test-distill", "config": "lite", "modalities": ["video", "imu"], "classes": "all",
        "train_groups": ["1"], "test_groups": ["2"], "window_offsets": [0.0], "seed": 3, "cache": False,
        "init": [{"checkpoint": str(imu_final), "parts": ["encoders.imu", "projections.imu", "unimodal_heads.imu"]}],
        "stages": [{"name": "video", "type": "supervised", "modalities": ["video", "imu"],
                    "label_modalities": ["video"], "epochs": 1, "lr": 1e-3, "warmup_epochs": 0, "batch_size": 16,
                    "align_weight": 1.0, "distill_weight": 1.0, "distill_from": "imu",
                    "freeze": ["encoders.imu", "projections.imu", "unimodal_heads.imu"]}],
    }
    final = train(_ctx(recipe, utd_mhad_dir, tmp_path / "video"))
    teacher, student = load_file(str(imu_final)), load_file(str(final))
    imu_keys = [k for k in teacher if k.startswith(("encoders.imu.", "projections.imu.", "unimodal_heads.imu."))]
    assert imu_keys and all(torch.equal(teacher[k], student[k]) for k in imu_keys)  # bit for bit, BN stats too
    model, _ = load_checkpoint(final, device="cpu")
    assert sorted(model.trained.encoders) == ["imu", "video"] and model.trained.fusion == ["video"]
    history = json.loads((tmp_path / "video" / "state.json").read_text())["history"]
    assert history[-1]["align"] > 0 and history[-1]["ce"] > 0 and history[-1]["distill"] > 0


@pytest.mark.parametrize("ce_weight", [0.5, 0.0])
def test_meta_stage_trains_its_ce_term_only_when_weighted(utd_mhad_dir, tmp_path, ce_weight):
    """Cross-subject episodes on two real training subjects; the CE term is on when its weight is."""
    recipe = {
        "name": "test-meta", "config": "lite", "fusion": {"kind": "mean"}, "modalities": ["imu"], "classes": "all",
        "train_groups": ["1", "3"], "test_groups": ["2"], "window_offsets": [0.0], "seed": 3, "cache": False,
        "stages": [{"name": "meta", "type": "meta", "modalities": ["imu"], "epochs": 1, "lr": 1e-3,
                    "warmup_epochs": 0, "episodes": 3, "way": 3, "shot": 2, "query": 2, "ce_weight": ce_weight,
                    "cross_group_episodes": True, "pairs": [[["imu"], ["imu"]]]}],
    }
    train(_ctx(recipe, utd_mhad_dir, tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "state.json").read_text())["history"][-1]
    assert record["proto"] > 0
    if ce_weight:
        assert record["ce"] > 0 and record["loss"] == pytest.approx(record["proto"] + record["ce"], rel=1e-4)
    else:
        assert "ce" not in record


def _centre_recipe(stages: list[dict], centre: bool = True) -> dict:
    recipe = _imu_recipe()
    recipe.update(name="test-centre", fusion={"kind": "mean", "centre": centre}, stages=stages)
    return recipe


_CENTRE = {"name": "centre", "type": "centre", "modalities": ["imu"]}


def test_centre_stage_stores_the_mean_unit_embedding_of_the_training_windows(utd_mhad_dir, tmp_path):
    import torch.nn.functional as F

    from trainer.datasets import load_clips
    from trainer.windows import build_window_set

    recipe = _centre_recipe([_imu_recipe(epochs=1)["stages"][0], _CENTRE])
    final = train(_ctx(recipe, utd_mhad_dir, tmp_path / "run"))
    before, _ = load_checkpoint(tmp_path / "run" / "stage-imu.safetensors", device="cpu")
    after, _ = load_checkpoint(final, device="cpu")
    assert not before.modality_centres.any()  # zeros until the centre stage
    clips = load_clips("utd-mhad", utd_mhad_dir, ["1"], ["imu"], None).clips
    windows = build_window_set(clips, before.config.specs, ["imu"], recipe["window_offsets"])
    assert windows.n_windows == 2 and len(windows) > 20
    with torch.no_grad():
        units = [F.normalize(before.projections["imu"](before.encoders["imu"](windows.tensors["imu"][:, w].float())[1]),
                             dim=-1) for w in range(windows.n_windows)]
    expected = torch.cat(units).mean(0)
    torch.testing.assert_close(after.modality_centres[after.modalities.index("imu")], expected, atol=1e-5, rtol=1e-4)
    assert 0.0 < float(expected.norm()) < 1.0
    assert torch.equal(after.modality_rotations, before.modality_rotations)  # no rotate_to: identity
    for key, value in before.state_dict().items():  # the stage trains nothing
        if not key.startswith("modality_"):
            assert torch.equal(after.state_dict()[key], value), key
    record = json.loads((tmp_path / "run" / "state.json").read_text())["history"][-1]
    assert record["stage"] == "centre" and record["centre_norm_imu"] == pytest.approx(float(expected.norm()), abs=1e-3)


def test_a_run_resumed_after_the_centre_stage_keeps_the_centres(utd_mhad_dir, tmp_path):
    stages = [_CENTRE, _imu_recipe(epochs=2)["stages"][0]]
    full = train(_ctx(_centre_recipe(stages), utd_mhad_dir, tmp_path / "full"))
    # stopped right after the centre stage, before any epoch of the next: last.safetensors holds the centres
    train(_ctx(_centre_recipe(stages), utd_mhad_dir, tmp_path / "partial", max_epochs=0))
    state = json.loads((tmp_path / "partial" / "state.json").read_text())
    assert state["stage"] == 1 and state["epoch"] == 0
    resumed = train(_ctx(_centre_recipe(stages), utd_mhad_dir, tmp_path / "partial"))
    a, _ = load_checkpoint(full, device="cpu")
    b, _ = load_checkpoint(resumed, device="cpu")
    assert a.modality_centres.any()
    torch.testing.assert_close(b.modality_centres, a.modality_centres)
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_centre_stage_without_centred_fusion_is_a_clear_error(utd_mhad_dir, tmp_path):
    with pytest.raises(ValueError, match=r"stage 'centre' \(type centre\) needs .*\"centre\": true"):
        train(_ctx(_centre_recipe([_CENTRE], centre=False), utd_mhad_dir, tmp_path / "run"))


def test_orthogonal_map_recovers_a_known_rotation():
    from trainer.geometry import orthogonal_map

    gen = torch.Generator().manual_seed(0)
    turn, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    source = torch.randn(200, 16, generator=gen)
    target = source @ turn + 0.01 * torch.randn(200, 16, generator=gen)
    found = orthogonal_map(source, target)
    torch.testing.assert_close(found @ found.T, torch.eye(16), atol=1e-5, rtol=0)
    assert float((found - turn).abs().max()) < 0.01
    with pytest.raises(ValueError, match="one shape"):
        orthogonal_map(source, target[:, :8])


def test_centre_stage_maps_video_onto_the_imu_space(utd_mhad_dir, tmp_path):
    """Real subject-1 clips, untrained encoders: the video map is a proper rotation that brings the
    video embeddings of each moment closer to its IMU embedding than centring alone; IMU is the anchor."""
    import torch.nn.functional as F

    from trainer.datasets import load_clips
    from trainer.geometry import training_unit_embeddings
    from trainer.windows import build_window_set

    recipe = _centre_recipe([dict(_CENTRE, modalities=["video", "imu"], rotate_to="imu")])
    recipe.update(modalities=["video", "imu"], window_offsets=[0.0])
    final = train(_ctx(recipe, utd_mhad_dir, tmp_path / "run"))
    model, _ = load_checkpoint(final, device="cpu")
    video, imu = model.modalities.index("video"), model.modalities.index("imu")
    rotation = model.modality_rotations[video]
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(rotation.shape[0]), atol=1e-4, rtol=0)
    assert torch.equal(model.modality_rotations[imu], torch.eye(rotation.shape[0]))
    clips = load_clips("utd-mhad", utd_mhad_dir, ["1"], ["video", "imu"], None).clips
    units, _ = training_unit_embeddings(model, build_window_set(clips, model.config.specs, ["video", "imu"], [0.0]),
                                        ["video", "imu"])
    v = units["video"] - model.modality_centres[video]
    i = units["imu"] - model.modality_centres[imu]
    torch.testing.assert_close(v.mean(0), torch.zeros_like(v[0]), atol=1e-5, rtol=0)
    centred_only = F.cosine_similarity(v, i).mean()
    mapped = F.cosine_similarity(v @ rotation, i).mean()
    assert float(mapped) > float(centred_only) + 0.05
    record = json.loads((tmp_path / "run" / "state.json").read_text())["history"][-1]
    assert record["rotation_trace_video"] == pytest.approx(float(rotation.trace()) / rotation.shape[0], abs=1e-3)


def test_init_refuses_an_encoder_of_another_architecture_but_skips_a_head_of_another_class_set(tmp_path):
    from mmg_live.checkpoint import save_checkpoint
    from mmg_live.models.mmg import MMGModel, build_model
    from mmg_live.models.registry import get_config
    from trainer.init_weights import init_from_checkpoints

    torch.manual_seed(0)
    old_stem = get_config("lite")
    old_stem.encoders["audio"] = {**old_stem.encoders["audio"], "hidden": 256}  # another projection width
    donor = save_checkpoint(tmp_path / "old_stem.safetensors", MMGModel(old_stem, [f"d{i}" for i in range(10)]))
    model = build_model("lite", [f"c{i}" for i in range(27)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"old_stem.safetensors: its audio encoder has another architecture"):
        init_from_checkpoints(model, [InitEntry(str(donor), ["encoders.audio"])])
    # same tensor shapes, but a third transformer layer: refused too, in both directions
    deeper = get_config("lite")
    deeper.encoders["imu"] = {**deeper.encoders["imu"], "depth": deeper.encoders["imu"]["depth"] + 1}
    deep_donor = save_checkpoint(tmp_path / "deeper.safetensors", MMGModel(deeper, [f"c{i}" for i in range(27)]))
    with pytest.raises(ValueError,
                       match=r"deeper.safetensors: its imu encoder has another architecture.*more, 0 fewer"):
        init_from_checkpoints(model, [InitEntry(str(deep_donor))])
    deeper_model = MMGModel(deeper, [f"c{i}" for i in range(27)])
    with pytest.raises(ValueError, match=r"its imu encoder has another architecture.*0 tensors more, \d+ fewer"):
        init_from_checkpoints(deeper_model, [InitEntry(str(donor), ["encoders.imu"])])
    # a refusal copies nothing
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # the IMU encoder matches: copied, while the 10-class heads are left as they were for 27 classes
    init_from_checkpoints(model, [InitEntry(str(donor), ["encoders.imu", "classifier"])])
    donor_state = load_checkpoint(donor)[0].state_dict()
    after = model.state_dict()
    imu_keys = [k for k in after if k.startswith("encoders.imu")]
    assert imu_keys and all(torch.equal(after[k], donor_state[k]) for k in imu_keys)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("classifier"))


def test_model_card_pairs_cover_every_modality_and_the_card_renders():
    from trainer.model_card import fewshot_pairs, render

    pairs = fewshot_pairs(["video", "imu", "pose"])
    assert pairs[0] == (["video", "imu", "pose"], ["video", "imu", "pose"])
    singles = [(s[0], q[0]) for s, q in pairs if len(s) == 1]
    assert sorted(singles) == sorted((a, b) for a in ("video", "imu", "pose") for b in ("video", "imu", "pose"))
    assert len(pairs) == 1 + 3 + 9
    assert fewshot_pairs(["imu"]) == [(["imu"], ["imu"])]
    metrics = {"classes": ["swipe left", "no action"], "sha256": "ab", "parameters_m": 3.0, "classifier": "ensemble",
               "trained": {"encoders": ["imu", "pose"], "fusion": ["imu", "pose"],
                           "classifier_modalities": ["imu", "pose"]},
               "manyshot": [{"modalities": ["pose"], "top1": 0.86, "n": 322}],
               "fewshot": [{"dataset": "utd-mhad novel", "support": ["pose"], "query": ["imu"], "acc": 0.7,
                            "ci95": 0.01, "episodes": 600}]}
    card = render(metrics)
    assert "| pose | 86.0 | 322 |" in card and "| utd-mhad novel | pose | imu | 70.0 ± 1.0 | 600 |" in card
    assert 'and "no action"' in card and "reads imu + pose" in card
