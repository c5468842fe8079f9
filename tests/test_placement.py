"""Placement is explicit (issue 29): the GUI's note and the model card name where the IMU is worn."""

from __future__ import annotations

import json

from mmg_live.assets import default_checkpoint_path
from mmg_live.placement import placement_note, thigh_classes
from trainer.model_card import render


def test_note_names_the_wrist_and_the_thigh_classes_of_the_model():
    classes = ["wave", "jog", "sit to stand", "no action"]
    assert thigh_classes(classes) == ["jog", "sit to stand"]
    note = placement_note(classes)
    assert note.startswith("IMU on the right wrist") and "jog, sit to stand: learned with it on the thigh" in note
    assert "thigh" not in placement_note(["wave", "clap"])


def test_model_card_says_where_the_imu_is_worn():
    metrics = json.loads((default_checkpoint_path().parent / "model_card.json").read_text())
    card = render(metrics)
    assert "**Where the IMU is worn: the right wrist**" in card
    assert "jog, sit to stand, stand to sit, lunge were recorded with the sensor on the\nright thigh" in card
    assert "mmg-calibrate mounting" in card
    assert (default_checkpoint_path().parent / "MODEL_CARD.md").read_text() == card  # the shipped card is current
