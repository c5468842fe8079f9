"""The dataset registry: a dataset's name → how to read it, its splits and its modalities.

Every command that takes ``--dataset NAME`` (``mmg-train``, ``mmg-eval``, ``mmg-data info``)
looks the name up here (:func:`get_dataset`); a new data set is one :func:`register_dataset`
call. The readers are imported when a data set is opened (they pull in scipy, OpenCV, PyAV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from mmg_common import MODALITIES
from trainer.data.cache import Cache
from trainer.data.clip import Clip, DataError
from trainer.data.splits import (FSDD_TEST_SPEAKERS, FSDD_TRAIN_SPEAKERS, UTD_NOVEL_ACTIONS, UTD_NUM_CLASSES,
                                 UTD_TEST_SUBJECTS, UTD_TRAIN_SUBJECTS, ClassSplit, random_class_split,
                                 utd_class_split)


class DatasetReader(Protocol):
    """What every dataset reader offers: clips by iteration (bad ones recorded in ``skipped``)."""

    class_names: Sequence[str]
    skipped: list[tuple[str, str]]

    @property
    def labels(self) -> list[int]: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Clip]: ...


#: ``open(root, groups, modalities, cache, class_names)``: a reader of ``root``.
Opener = Callable[[Path, Sequence[str] | None, Sequence[str], Cache | None, Sequence[str] | None], DatasetReader]


def _random_split(num_classes: int, novel_actions: Sequence[int] | None, num_novel: int | None) -> ClassSplit:
    return random_class_split(num_classes, num_novel if num_novel is not None else max(1, num_classes // 4), seed=0)


@dataclass(frozen=True)
class DatasetEntry:
    """One registered data set.

    Attributes:
        name: the ``--dataset`` name.
        description: one line for help texts.
        modalities: what its clips can hold, in canonical order.
        open: a reader of a root folder (or file) for some groups and modalities.
        clip_groups: the group (subject, speaker) of every clip of a reader, without decoding.
        train_groups, test_groups: the documented default split (None: every group).
        num_classes: the size of its fixed label space (None: read from the data).
        reader_selects_groups: whether ``open`` itself keeps only the asked groups (else the
            clips are filtered by their ``subject``).
        class_split: ``(num_classes, novel_actions, num_novel) -> ClassSplit``, the few-shot
            base/novel classes.
        video_kind: what its video is (``"depth"``, ``"colour"``), recorded in a trained video
            spec's ``trained_on``; None when unknown or mixed.
        derived_modalities: modalities computed from another stream rather than recorded (loaded
            only when asked for by name).
    """

    name: str
    description: str
    modalities: tuple[str, ...]
    open: Opener
    clip_groups: Callable[[DatasetReader], list[str]]
    train_groups: tuple[str, ...] | None = None
    test_groups: tuple[str, ...] | None = None
    num_classes: int | None = None
    reader_selects_groups: bool = False
    class_split: Callable[[int, Sequence[int] | None, int | None], ClassSplit] = field(default=_random_split)
    video_kind: str | None = None
    derived_modalities: tuple[str, ...] = ()

    def default_groups(self, split: str) -> list[str] | None:
        """The documented default ``"train"`` or ``"test"`` groups (None: all)."""
        groups = self.train_groups if split == "train" else self.test_groups
        return None if groups is None else list(groups)


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a data set to the registry (a name can be registered once)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"dataset {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def dataset_names() -> tuple[str, ...]:
    """Every registered data set's name, in registration order."""
    return tuple(_REGISTRY)


def get_dataset(name: str) -> DatasetEntry:
    """The registry entry of ``name``; a ValueError lists the known names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# ------------------------------------------------------------------------------- the data sets

#: Pose is not in the recordings: it is extracted from the depth frames (and cached) by the live
#: pose estimator, see :mod:`trainer.data.utd_pose`.
UTD_MHAD_MODALITIES = ("video", "imu", "pose")

def _open_utd_mhad(root: Path, groups: Sequence[str] | None, modalities: Sequence[str], cache: Cache | None,
                   class_names: Sequence[str] | None) -> DatasetReader:
    from trainer.data.utd_mhad import UtdMhadDataset
    from trainer.data.utd_pose import TrialPoseReader

    mods = [m for m in modalities if m in UTD_MHAD_MODALITIES]
    if not mods:
        raise DataError(f"UTD-MHAD has video, imu and pose only; asked for {list(modalities)}")
    subjects = None if groups is None else [int(g) for g in groups]
    pose_reader = TrialPoseReader(cache).stream if "pose" in mods else None
    return UtdMhadDataset(root, subjects=subjects, modalities=mods, cache=cache, pose_reader=pose_reader)


def _open_fsdd(root: Path, groups: Sequence[str] | None, modalities: Sequence[str], cache: Cache | None,
               class_names: Sequence[str] | None) -> DatasetReader:
    from trainer.data.fsdd import FsddDataset

    return FsddDataset(root, speakers=None if groups is None else list(groups), cache=cache)


def _open_sessions(root: Path, groups: Sequence[str] | None, modalities: Sequence[str], cache: Cache | None,
                   class_names: Sequence[str] | None) -> DatasetReader:
    from trainer.data.sessions import SessionDataset

    return SessionDataset([root], class_names=class_names, modalities=tuple(modalities), cache=cache)


def _open_manifest(root: Path, groups: Sequence[str] | None, modalities: Sequence[str], cache: Cache | None,
                   class_names: Sequence[str] | None) -> DatasetReader:
    from trainer.data.manifest import ManifestDataset

    return ManifestDataset(root, class_names=class_names, modalities=tuple(modalities), cache=cache)


register_dataset(DatasetEntry(
    "utd-mhad", "UTD-MHAD depth video + inertial sensor (+ pose from depth), 27 actions, 8 subjects",
    UTD_MHAD_MODALITIES,
    _open_utd_mhad, lambda reader: [str(t.subject) for t in reader.trials],
    train_groups=tuple(str(s) for s in UTD_TRAIN_SUBJECTS), test_groups=tuple(str(s) for s in UTD_TEST_SUBJECTS),
    num_classes=UTD_NUM_CLASSES, reader_selects_groups=True,
    class_split=lambda n, novel_actions, num_novel: utd_class_split(novel_actions or UTD_NOVEL_ACTIONS),
    video_kind="depth", derived_modalities=("pose",)))
register_dataset(DatasetEntry(
    "fsdd", "Free Spoken Digit Dataset: audio, 10 digits, speakers as groups", ("audio",),
    _open_fsdd, lambda reader: [r.speaker for r in reader.recordings],
    train_groups=FSDD_TRAIN_SPEAKERS, test_groups=FSDD_TEST_SPEAKERS, num_classes=10, reader_selects_groups=True))
register_dataset(DatasetEntry(
    "sessions", "recorded mmg-live session folders (labelled segments)", MODALITIES,
    _open_sessions, lambda reader: [s.subject or "?" for s in reader.segments]))
register_dataset(DatasetEntry(
    "manifest", "an MMG-Ego4D-style CSV/JSONL manifest of clips", MODALITIES,
    _open_manifest, lambda reader: [r.subject or "?" for r in reader.rows]))


# ---------------------------------------------------------------------------------- using them

@dataclass
class LoadedClips:
    """Clips of some groups (subjects/speakers) of a dataset, with what was skipped and why."""

    clips: list[Clip]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def open_dataset(dataset: str, root: str | Path, groups: Sequence[str] | None = None,
                 modalities: Sequence[str] | None = None, cache: Cache | None = None,
                 class_names: Sequence[str] | None = None) -> DatasetReader:
    """A reader of ``dataset`` at ``root`` (``modalities`` None: every recorded modality; a derived
    one such as UTD-MHAD's pose, which costs minutes to extract, only when asked for)."""
    entry = get_dataset(dataset)
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found (--data)")
    if not modalities:
        modalities = [m for m in entry.modalities if m not in entry.derived_modalities]
    return entry.open(root, groups, tuple(modalities), cache, class_names)


def load_clips(dataset: str, root: str | Path, groups: Sequence[str] | None, modalities: Sequence[str],
               cache: Cache | None = None, class_names: Sequence[str] | None = None) -> LoadedClips:
    """Read every clip of ``groups`` (subjects for UTD-MHAD, speakers for FSDD, subject field otherwise)."""
    entry = get_dataset(dataset)
    reader = open_dataset(dataset, root, groups, modalities, cache, class_names)
    wanted = None if groups is None or entry.reader_selects_groups else set(groups)
    clips = [c for c in reader if wanted is None or c.subject in wanted]
    return LoadedClips(clips, list(reader.class_names), list(reader.skipped))


def class_count(dataset: str, root: str | Path) -> int:
    """How many classes ``dataset`` has: its fixed label space, else what the data at ``root`` holds."""
    entry = get_dataset(dataset)
    if entry.num_classes is not None:
        return entry.num_classes
    return len(open_dataset(dataset, root).class_names)


def class_subset(which: str, dataset: str, num_classes: int, novel_actions: Sequence[int] | None = None,
                 num_novel: int | None = None) -> list[int]:
    """The class indices of ``which`` (``all``, ``base`` or ``novel``: the dataset's few-shot split)."""
    if which == "all":
        return list(range(num_classes))
    split = get_dataset(dataset).class_split(num_classes, novel_actions, num_novel)
    if which == "base":
        return list(split.base)
    if which == "novel":
        return list(split.novel)
    raise ValueError(f"classes must be all, base or novel; got {which!r}")
