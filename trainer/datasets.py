"""Open a dataset by name (``--dataset utd-mhad --data DIR``) as clips + class names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainer.data.cache import Cache
from trainer.data.clip import Clip, DataError

DATASETS = ("utd-mhad", "fsdd", "sessions", "manifest")


@dataclass
class LoadedClips:
    """Clips of some groups (subjects/speakers) of a dataset, with what was skipped and why."""

    clips: list[Clip]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def default_groups(dataset: str, split: str) -> list[str] | None:
    """The documented default train/test groups of a dataset (None: all)."""
    from trainer.data import splits

    if dataset == "utd-mhad":
        return [str(s) for s in (splits.UTD_TRAIN_SUBJECTS if split == "train" else splits.UTD_TEST_SUBJECTS)]
    if dataset == "fsdd":
        return list(splits.FSDD_TRAIN_SPEAKERS if split == "train" else splits.FSDD_TEST_SPEAKERS)
    return None


def dataset_modalities(dataset: str) -> tuple[str, ...]:
    return {"utd-mhad": ("video", "imu"), "fsdd": ("audio",)}.get(dataset, ("video", "audio", "imu"))


def load_clips(dataset: str, root: str | Path, groups: Sequence[str] | None, modalities: Sequence[str],
               cache: Cache | None = None, class_names: Sequence[str] | None = None) -> LoadedClips:
    """Read every clip of ``groups`` (subjects for UTD-MHAD, speakers for FSDD, subject field otherwise)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found (--data)")
    if dataset == "utd-mhad":
        from trainer.data.utd_mhad import ACTIONS, UtdMhadDataset

        mods = [m for m in modalities if m in ("video", "imu")]
        if not mods:
            raise DataError(f"UTD-MHAD has video and imu only; asked for {list(modalities)}")
        subjects = None if groups is None else [int(g) for g in groups]
        ds = UtdMhadDataset(root, subjects=subjects, modalities=mods, cache=cache)
        names = list(ACTIONS)
    elif dataset == "fsdd":
        from trainer.data.fsdd import FsddDataset

        ds = FsddDataset(root, speakers=None if groups is None else list(groups), cache=cache)
        names = [str(d) for d in range(10)]
    elif dataset == "sessions":
        from trainer.data.sessions import SessionDataset

        ds = SessionDataset([root], class_names=class_names, modalities=tuple(modalities), cache=cache)
        names = list(ds.class_names)
    elif dataset == "manifest":
        from trainer.data.manifest import ManifestDataset

        ds = ManifestDataset(root, class_names=class_names, modalities=tuple(modalities), cache=cache)
        names = list(ds.class_names)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    clips = [c for c in ds if groups is None or dataset in ("utd-mhad", "fsdd") or c.subject in set(groups)]
    return LoadedClips(clips, names, list(getattr(ds, "skipped", [])))
