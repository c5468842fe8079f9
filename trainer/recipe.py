"""Training recipes: JSON files (``trainer/recipes/NAME.json``) read into a checked dataclass tree.

A recipe names the model config and what it overrides, the data it trains on, the weights it
starts from (``init``), its table row and its stages (:class:`~trainer.stage_config.StageConfig`).
``--set key=value`` overrides (:func:`apply_override`) change the JSON before it is checked, so
a mistyped override key is refused like a mistyped recipe key: with its path and the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmg_common import MODALITIES
from mmg_live.modalities import AudioSpec, ImuSpec, VideoSpec
from trainer.stage_config import StageConfig
from trainer.typed_json import FieldError, from_json, to_json

RECIPE_DIR = Path(__file__).parent / "recipes"
CLASS_SETS = ("all", "base", "novel")
TABLE_ROLES = ("manyshot", "fewshot")
_SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    m: tuple(f.name for f in fields(spec) if f.init)
    for m, spec in (("video", VideoSpec), ("audio", AudioSpec), ("imu", ImuSpec))}


@dataclass
class InitEntry:
    """Weights copied from an earlier run's checkpoint before training (``parts``: key prefixes, None: all)."""

    checkpoint: str
    parts: list[str] | None = None


@dataclass
class TableInfo:
    """Where a run's checkpoint goes in ``mmg-eval table``: its role and row label (None: the defaults)."""

    role: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in TABLE_ROLES:
            raise FieldError("table.role", f"must be one of {TABLE_ROLES}, got {self.role!r}")

    def to_dict(self) -> dict[str, str]:
        """The fields that are set (what the checkpoint's training info stores)."""
        return {k: v for k, v in to_json(self).items() if v is not None}


@dataclass
class Recipe:
    """A training run's recipe. Defaults are those of a key the JSON leaves out."""

    name: str
    description: str = ""
    # the model: a registered config, and what the recipe changes in it
    config: str = "lite"
    fusion: dict[str, Any] | None = None  # replaces the config's fusion, e.g. {"kind": "mean", "centre": true}
    specs: dict[str, dict[str, Any]] | None = None  # spec fields per modality, e.g. {"imu": {"window_s": 4.5}}
    encoders: list[str] | None = None  # keep only these encoders of the config (None: all)
    fit_stats: bool = True  # normalisation statistics from the training clips
    init: list[InitEntry] = field(default_factory=list)
    # publishers' pretrained encoders loaded before ``init`` (trainer.pretrained), e.g. ["mvit_b_16x4_k400"]
    pretrained: list[str] = field(default_factory=list)
    # the data
    modalities: list[str] = field(default_factory=lambda: ["video", "imu"])
    classes: str = "all"  # all, base or novel (the dataset's few-shot class split)
    idle_class: bool = False  # add a "no action" class learned from still clips (trainer.idle)
    novel_actions: list[int] | None = None  # UTD-MHAD: 1-based novel actions (None: the documented 6)
    num_novel: int | None = None  # other data sets: novel classes of a seeded random split (None: a quarter)
    train_groups: list[str | int] | None = None  # subjects/speakers (None: the dataset's default split)
    test_groups: list[str | int] | None = None
    window_offsets: list[float] = field(default_factory=lambda: [0.0, 0.15, 0.3, 0.45])
    time_warp: list[float] = field(default_factory=lambda: [1.0])
    max_views: int | None = None
    cache: bool = True
    cache_dir: str | None = None
    # the run
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    eval_each_epoch: bool = True  # test top-1 during supervised stages
    table: TableInfo = field(default_factory=TableInfo)
    stages: list[StageConfig] = field(default_factory=list)  # at least one

    def __post_init__(self) -> None:
        if not self.stages:
            raise FieldError("stages", "a recipe needs at least one stage")
        if self.classes not in CLASS_SETS:
            raise FieldError("classes", f"must be one of {CLASS_SETS}, got {self.classes!r}")
        for key in ("modalities", "encoders"):
            bad = [m for m in getattr(self, key) or [] if m not in MODALITIES]
            if bad:
                raise FieldError(key, f"unknown modalities {bad}; expected among {MODALITIES}")
        for modality, values in (self.specs or {}).items():
            if modality not in _SPEC_FIELDS:
                raise FieldError(f"specs.{modality}", f"unknown modality; expected one of {MODALITIES}")
            for key in values:
                if key not in _SPEC_FIELDS[modality]:
                    raise FieldError(f"specs.{modality}.{key}",
                                     f"unknown key (known: {', '.join(_SPEC_FIELDS[modality])})")
        for key in ("train_groups", "test_groups"):
            groups = getattr(self, key)
            if groups is not None:
                setattr(self, key, [str(g) for g in groups])

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "recipe") -> "Recipe":
        """A checked recipe from its JSON object; a ValueError names ``source`` and the key's path."""
        try:
            return from_json(cls, values)
        except FieldError as exc:
            raise ValueError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (every value, defaults included): what a run stores and resumes with."""
        out = to_json(self)
        out["stages"] = [stage.to_dict() for stage in self.stages]
        out["table"] = self.table.to_dict()
        return out


def recipe_path(name_or_path: str | Path) -> Path:
    """The file of a recipe given by name (``trainer/recipes/NAME.json``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        available = sorted(p.stem for p in RECIPE_DIR.glob("*.json"))
        raise FileNotFoundError(f"recipe {str(name_or_path)!r} not found (available: {', '.join(available)})")
    return path


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """A recipe by name or path, with ``--set`` ``overrides`` applied, checked.

    Raises:
        FileNotFoundError: no such recipe (the message lists the shipped ones).
        ValueError: invalid JSON, a malformed override, or an unknown key or wrongly typed value
            (the message names the file and the key's path, e.g. ``stages.2.wya``).
    """
    path = recipe_path(name_or_path)
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe is a JSON object")
    values.setdefault("name", path.stem)
    for assignment in overrides:
        apply_override(values, assignment)
    source = f"{path} (with --set {' '.join(overrides)})" if overrides else str(path)
    return Recipe.from_dict(values, source=source)


def apply_override(values: dict[str, Any], assignment: str) -> None:
    """Apply ``key.sub=value`` to a recipe's JSON object (``value`` parsed as JSON when it can be).

    A path step is an object key or a list index; ``*`` is every item of a list, so
    ``stages.*.epochs=3`` sets every stage's epochs. Missing objects on the way are created.
    """
    if "=" not in assignment:
        raise ValueError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts = key.split(".")
    targets: list[Any] = [values]
    for depth, part in enumerate(parts[:-1]):
        targets = [child for t in targets for child in _children(t, part, ".".join(parts[:depth + 1]))]
    for t in targets:
        if isinstance(t, list):
            t[_index(t, parts[-1], key)] = value
        elif isinstance(t, dict):
            t[parts[-1]] = value
        else:
            raise ValueError(f"--set {key}: {'.'.join(parts[:-1])} is not an object or a list")


def _children(target: Any, part: str, path: str) -> list[Any]:
    """The values ``part`` selects in ``target`` (an object key, a list index or ``*``)."""
    if isinstance(target, list):
        return list(target) if part == "*" else [target[_index(target, part, path)]]
    if isinstance(target, dict):
        return [target.setdefault(part, {})]
    raise ValueError(f"--set {path}: {path.rpartition('.')[0]} is not an object or a list")


def _index(items: list[Any], part: str, path: str) -> int:
    try:
        index = int(part)
        items[index]
    except (ValueError, IndexError):
        raise ValueError(f"--set {path}: {part!r} is not an index of a list of {len(items)} items") from None
    return index
