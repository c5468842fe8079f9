"""Where the models expect the body-worn IMU, and which of their classes were learned elsewhere.

Every model trained here learned its IMU branch from UTD-MHAD, whose inertial sensor is worn on
the right wrist, except for actions 22-27, recorded with it on the right thigh. A user wears one
IMU on the wrist, so those classes see a different signal live; custom actions are always
recorded with the user's own placement.
"""

from __future__ import annotations

from typing import Sequence

#: Where the IMU is worn for the trained classes.
IMU_PLACEMENT = "right wrist"

#: UTD-MHAD actions 22-27, recorded with the inertial sensor on the right thigh.
THIGH_SENSOR_ACTIONS: tuple[str, ...] = ("jog", "walk", "sit to stand", "stand to sit", "lunge", "squat")


def thigh_classes(class_names: Sequence[str]) -> list[str]:
    """The classes of ``class_names`` that were learned with the IMU on the thigh."""
    return [c for c in class_names if c in THIGH_SENSOR_ACTIONS]


def placement_note(class_names: Sequence[str]) -> str:
    """One line for the user: where to wear the IMU for a model with ``class_names``."""
    note = f"IMU on the {IMU_PLACEMENT}"
    thigh = thigh_classes(class_names)
    if thigh:
        note += f" ({', '.join(thigh)}: learned with it on the thigh)"
    return note + "; custom actions use your own placement"
