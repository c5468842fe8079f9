"""Recipes are checked when read: every shipped one loads, a mistyped key or value is refused
with its path and the file, ``--set`` overrides still apply, and a run's stored recipe reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.datasets import class_subset, dataset_names, get_dataset
from trainer.recipe import RECIPE_DIR, Recipe, apply_override, load_recipe
from trainer.stage_config import StageConfig

SHIPPED = sorted(RECIPE_DIR.glob("*.json"))


def _write(tmp_path: Path, recipe: dict) -> Path:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(recipe))
    return path


def _minimal(**top) -> dict:
    return {"modalities": ["imu"], "stages": [{"name": "imu", "modalities": ["imu"], "epochs": 2}], **top}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads_and_round_trips(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.stages
    assert all(isinstance(stage, StageConfig) for stage in recipe.stages)
    # what a run stores in state.json reads back as the same recipe
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_the_shipped_recipes_are_found_by_name() -> None:
    assert len(SHIPPED) >= 9
    assert load_recipe("fewshot_meta").stages[-1].centre.rotate_to == "imu"
    with pytest.raises(FileNotFoundError, match="available: .*unimodal_imu"):
        load_recipe("no_such_recipe")


def test_an_unknown_top_level_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _minimal(windw_offsets=[0.0]))
    with pytest.raises(ValueError, match=r"mine\.json.*windw_offsets: unknown key \(did you mean 'window_offsets'"):
        load_recipe(path)


def test_an_unknown_stage_option_names_its_path_and_the_file(tmp_path: Path) -> None:
    recipe = _minimal()
    recipe["stages"].append({"name": "meta", "type": "meta", "modalities": ["imu"], "wya": 5})
    with pytest.raises(ValueError, match=r"mine\.json.*stages\.1\.wya: unknown key \(did you mean 'way'"):
        load_recipe(_write(tmp_path, recipe))


def test_a_wrong_type_names_the_key_and_the_file(tmp_path: Path) -> None:
    recipe = _minimal()
    recipe["stages"][0]["epochs"] = "five"
    with pytest.raises(ValueError, match=r"mine\.json.*stages\.0\.epochs: expected a whole number, got a string"):
        load_recipe(_write(tmp_path, recipe))
    with pytest.raises(ValueError, match=r"mine\.json.*seed: expected a whole number"):
        load_recipe(_write(tmp_path, _minimal(seed=True)))
    with pytest.raises(ValueError, match=r"mine\.json.*init\.0\.checkpoint: missing"):
        load_recipe(_write(tmp_path, _minimal(init=[{"parts": ["encoders.imu"]}])))


def test_an_option_of_another_stage_kind_is_refused(tmp_path: Path) -> None:
    recipe = _minimal()
    recipe["stages"][0]["way"] = 3  # meta-training option on a supervised stage
    with pytest.raises(ValueError, match=r"stages\.0: stage 'imu' is a supervised stage: way is an option of meta"):
        load_recipe(_write(tmp_path, recipe))


def test_spec_overrides_are_checked_against_the_modality_spec(tmp_path: Path) -> None:
    assert load_recipe("unimodal_audio", ["specs.audio.high_freq_hz=4000"]).specs["audio"]["high_freq_hz"] == 4000
    with pytest.raises(ValueError, match=r"specs\.audio\.high_freq: unknown key"):
        load_recipe("unimodal_audio", ["specs.audio.high_freq=4000"])


def test_set_overrides_still_apply() -> None:
    recipe = load_recipe("default_utd", [
        "stages.0.epochs=5", "stages.*.lr=5e-4", 'fusion={"kind":"mlp","dim":128}', "train_groups=[1,3]",
        "init.0.checkpoint=runs/x/model.safetensors", 'table.label="mine"', 'classes="all"'])
    assert recipe.stages[0].epochs == 5 and [s.lr for s in recipe.stages] == [5e-4, 5e-4]
    assert recipe.fusion == {"kind": "mlp", "dim": 128} and recipe.train_groups == ["1", "3"]
    assert recipe.init[0].checkpoint == "runs/x/model.safetensors" and recipe.init[0].parts
    assert recipe.table.label == "mine" and recipe.classes == "all"
    # a mistyped override key is refused like a mistyped recipe key
    with pytest.raises(ValueError, match=r"default_utd\.json \(with --set stages\.0\.epoch=5\): stages\.0\.epoch"):
        load_recipe("default_utd", ["stages.0.epoch=5"])
    with pytest.raises(ValueError, match="not an index of a list of 2 items"):
        load_recipe("default_utd", ["stages.7.epochs=5"])
    with pytest.raises(ValueError, match="key=value"):
        apply_override({}, "nonsense")


def test_dataset_registry_lists_the_known_names() -> None:
    assert set(dataset_names()) >= {"utd-mhad", "fsdd", "sessions", "manifest"}
    assert get_dataset("fsdd").modalities == ("audio",)
    assert get_dataset("utd-mhad").default_groups("test") == ["2", "4", "6"]
    assert len(class_subset("novel", "utd-mhad", 27)) == 6 and len(class_subset("base", "utd-mhad", 27)) == 21
    with pytest.raises(ValueError, match="unknown dataset 'utd'; known: utd-mhad, fsdd"):
        get_dataset("utd")


def test_a_run_folder_of_before_resumes_with_the_recipe_it_stored(tmp_path: Path) -> None:
    """state.json of older runs holds the recipe as written (with its name), not the resolved one."""
    from trainer.run import read_progress

    written = json.loads((RECIPE_DIR / "unimodal_imu.json").read_text())
    written["name"] = "unimodal_imu"
    apply_override(written, "stages.0.epochs=3")
    (tmp_path / "state.json").write_text(json.dumps({"recipe": written, "stage": 0, "epoch": 2, "step": 40,
                                                      "history": [{"epoch": 1}, {"epoch": 2}]}))
    progress = read_progress(tmp_path, load_recipe("unimodal_imu", ["stages.0.epochs=3"]))
    assert progress is not None and (progress.stage, progress.epoch, progress.step) == (0, 2, 40)
    assert progress.recipe == written and len(progress.history) == 2
    with pytest.raises(ValueError, match="different recipe"):
        read_progress(tmp_path, load_recipe("unimodal_imu"))
    # a new run stores the resolved recipe, which reads back as the same
    resolved = load_recipe("unimodal_imu", ["stages.0.epochs=3"])
    (tmp_path / "state.json").write_text(json.dumps({"recipe": resolved.to_dict(), "stage": 1, "epoch": 0,
                                                      "step": 0, "history": []}))
    assert read_progress(tmp_path, resolved).stage == 1
    assert read_progress(tmp_path / "new", resolved) is None
