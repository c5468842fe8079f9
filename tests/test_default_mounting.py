"""The shipped default model with the IMU strapped on in other orientations (issue 29's bars),
measured here by ``trainer.mounting`` on UTD-MHAD test subjects 2, 4, 6 (IMU only)."""

from __future__ import annotations

import json

import pytest

from mmg_live.assets import default_checkpoint_path
from mmg_live.checkpoint import load_checkpoint
from trainer.mounting import MOUNTINGS, fewshot_across_mountings, mounting_table

# IMU-only top-1 at the canonical mounting of the default model before it read the gravity frame
# (sensor frame, ±20° tilts), measured by the same code: the bar is "within 3 points of it".
SENSOR_FRAME_CANONICAL = 0.849


@pytest.fixture(scope="module")
def measured(utd_mhad_dir):
    model, _ = load_checkpoint(default_checkpoint_path(), device="cpu")
    table = mounting_table(model, utd_mhad_dir)
    table["fewshot"] = fewshot_across_mountings(model, utd_mhad_dir, episodes=300)
    rows = ", ".join(f"{r['mounting']} {100 * r['uncalibrated']:.1f}/{100 * r['calibrated']:.1f}"
                     for r in table["rows"])
    few = ", ".join(f"{r['query']} {100 * r['acc']:.1f}" for r in table["fewshot"])
    print(f"\ncanonical {100 * table['canonical']:.1f}; uncalibrated/calibrated: {rows}; few-shot by query: {few}")
    return table


def test_any_mounting_without_calibration(measured):
    assert measured["canonical"] >= SENSOR_FRAME_CANONICAL - 0.03, measured["canonical"]
    assert measured["clips"] == 252 and [r["mounting"] for r in measured["rows"]] == list(MOUNTINGS)
    assert all(r["uncalibrated"] >= 0.75 for r in measured["rows"]), measured["rows"]


def test_mounting_calibration_restores_the_canonical_accuracy(measured):
    assert all(abs(r["calibrated"] - measured["canonical"]) <= 0.02 for r in measured["rows"]), measured["rows"]


def test_custom_actions_recorded_at_one_mounting_are_recognised_at_another(measured):
    turned = [r for r in measured["fewshot"] if r["query"] != "none"]
    assert len(turned) == len(MOUNTINGS)
    assert all(r["acc"] >= 0.80 for r in turned), turned


def test_the_model_card_reports_these_figures(measured):
    card = json.loads((default_checkpoint_path().parent / "model_card.json").read_text())["mounting"]
    assert card["canonical"] == pytest.approx(measured["canonical"])
    assert [r["mounting"] for r in card["rows"]] == [r["mounting"] for r in measured["rows"]]
    for ours, theirs in zip(measured["rows"], card["rows"]):
        assert ours["uncalibrated"] == pytest.approx(theirs["uncalibrated"])
        assert ours["calibrated"] == pytest.approx(theirs["calibrated"])
