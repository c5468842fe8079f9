"""One stage of a recipe: its kind, the options every kind shares, and each kind's option groups.

In a recipe a stage is one flat JSON object (``{"name": "meta", "type": "meta", "way": 5, ...}``);
:func:`StageConfig.from_dict` sorts its keys into the groups and refuses an unknown key, a value
of the wrong type, and an option of a group that the stage's kind never reads (``way`` on a
supervised stage). The kinds (what :mod:`trainer.stages` does with them):

* ``supervised``: cross-entropy on the fused logits (+ unimodal heads, alignment), with the
  :class:`Distillation` group;
* ``align``: the alignment loss only;
* ``meta``: cross-modal prototypical episodes, with the :class:`MetaTraining` group;
* ``centre``: no training; stores modality centres, with the :class:`Centring` group.

Every kind accepts the shared options and the :class:`Augmentation` group, so ``--set
stages.*.lr=...`` works on any recipe (a ``centre`` stage ignores them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trainer.typed_json import from_json, to_json

STAGE_TYPES = ("supervised", "align", "meta", "centre")


@dataclass
class Augmentation:
    """Training augmentation of the model inputs (:func:`trainer.augment.augment_inputs`)."""

    imu_noise: float = 0.05
    imu_rotation: float = 0.0  # degrees: accel and gyro turned together about a random axis (sensor placement)
    imu_yaw: float = 0.0  # degrees: ... and about the gravity axis (mmg_live.modalities.GRAVITY_AXIS), after that
    video_shift: int = 4
    pose_rotation: float = 0.0  # degrees: landmarks turned about the vertical axis (where the camera stands)
    pose_noise: float = 0.0  # Gaussian jitter of landmark positions, in torso lengths (the extractor's noise)
    # audio ([B, frames, mels] model inputs); defaults keep the old behaviour (noise only)
    audio_noise: float | None = None  # Gaussian noise std; None: 0.5 × imu_noise
    audio_gain: float = 0.0  # random level: + U(-g, g) added to the whole fbank (log-mel: gain)
    audio_shift: int = 0  # random time shift of ±frames, vacated frames filled with the clip's minimum
    audio_freq_warp: float = 0.0  # mel axis stretched by a factor in [1-w, 1+w] (speaker/VTLP-like)
    audio_time_stretch: float = 0.0  # tempo: time axis played faster/slower by a log-uniform factor in [1/(1+s), 1+s]
    freq_masks: int = 0  # SpecAugment: number of frequency masks ...
    freq_mask_width: int = 0  # ... each U{0..width} mel bins, set to 0
    time_masks: int = 0  # number of time masks ...
    time_mask_width: int = 0  # ... each U{0..width} frames, set to 0


@dataclass
class Distillation:
    """Soft targets from another modality's unimodal head (a teacher loaded via ``init``, frozen).

    JSON keys: ``distill_weight``, ``distill_from``, ``distill_temperature``.
    """

    weight: float = field(default=0.0, metadata={"key": "distill_weight"})
    teacher: str = field(default="imu", metadata={"key": "distill_from"})
    temperature: float = field(default=2.0, metadata={"key": "distill_temperature"})


def _default_pairs() -> list[list[list[str]]]:
    return [[["video", "imu"], ["video", "imu"]], [["video"], ["imu"]], [["imu"], ["video"]],
            [["video", "imu"], ["imu"]], [["video", "imu"], ["video"]]]


@dataclass
class MetaTraining:
    """N-way K-shot episodes; each draws a (support modalities, query modalities) pair."""

    way: int = 5
    shot: int = 5
    query: int = 5
    episodes: int = 40
    proto_scale: float = 10.0
    cross_group_episodes: bool = False  # queries from one training subject/speaker, support from the others
    pairs: list[list[list[str]]] = field(default_factory=_default_pairs)


@dataclass
class Centring:
    """What a ``centre`` stage stores besides the centres."""

    rotate_to: str | None = None  # the modality the others are rotated onto (None: centres only)


#: The option groups only some kinds read, by the kinds that read them.
KIND_GROUPS: dict[str, tuple[str, ...]] = {"distill": ("supervised",), "meta": ("meta",), "centre": ("centre",)}


@dataclass
class StageConfig:
    """One stage of a recipe (every option overridable from the command line)."""

    name: str
    type: str = "supervised"
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_epochs: float = 1.0
    modalities: list[str] = field(default_factory=lambda: ["video", "imu"])
    label_modalities: list[str] | None = None
    modality_dropout: float = 0.0
    ce_weight: float = 1.0
    unimodal_weight: float = 0.5
    align_weight: float = 0.0
    temperature: float = 0.1
    freeze: list[str] = field(default_factory=list)
    # The fused classifier learns on detached encoder outputs: the encoders then learn only from
    # their unimodal heads (and alignment/distillation). On UTD-MHAD depth the attention head's CE,
    # which reaches the encoder's tokens without its pooled dropout, made the video encoder fit
    # the training subjects' silhouettes (plain video specialist, one thread, seed 0: 72.8 % with it, 78.0 % without).
    fusion_detach: bool = False
    label_smoothing: float = 0.1
    augment: Augmentation = field(default_factory=Augmentation, metadata={"flatten": True})
    distill: Distillation = field(default_factory=Distillation, metadata={"flatten": True})
    meta: MetaTraining = field(default_factory=MetaTraining, metadata={"flatten": True})
    centre: Centring = field(default_factory=Centring, metadata={"flatten": True})

    def __post_init__(self) -> None:
        if self.type not in STAGE_TYPES:
            raise ValueError(f"stage {self.name!r}: type must be one of {STAGE_TYPES}, got {self.type!r}")
        if not self.modalities:
            raise ValueError(f"stage {self.name!r}: needs at least one modality")
        for group, kinds in KIND_GROUPS.items():
            if self.type in kinds:
                continue
            value = getattr(self, group)
            changed = _changed_keys(value, type(value)())
            if changed:
                raise ValueError(f"stage {self.name!r} is a {self.type} stage: {', '.join(changed)} "
                                 f"{'is an option' if len(changed) == 1 else 'are options'} of "
                                 f"{' and '.join(kinds)} stages only")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: str = "") -> "StageConfig":
        """A stage from its flat JSON object; ``path`` (e.g. ``stages.2``) prefixes error messages.

        Raises:
            trainer.typed_json.FieldError: (a ``ValueError``) naming the offending key.
        """
        return from_json(cls, values, path)

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object, without the option groups this stage's kind does not read."""
        out = to_json(self)
        for group, kinds in KIND_GROUPS.items():
            if self.type not in kinds:
                for key in to_json(getattr(self, group)):
                    out.pop(key)
        return out


def _changed_keys(value: Any, default: Any) -> list[str]:
    ours, theirs = to_json(value), to_json(default)
    return [k for k in ours if ours[k] != theirs[k]]
