"""Subject / speaker splits and the base/novel class split used for few-shot learning.

Defaults (fixed, so results are comparable across runs):

- UTD-MHAD subjects: train 1, 3, 5; test 2, 4, 6 (the dataset's usual cross-subject protocol;
  subjects 7 and 8 are kept back as an unseen set).
- FSDD speakers: train george, jackson, lucas; test nicolas.
- UTD-MHAD few-shot classes: 21 base / 6 novel. The novel actions are
  4 clap, 8 draw x, 13 boxing, 17 tennis serve (IMU on the wrist) and 23 walk, 27 squat
  (IMU on the thigh), so both sensor placements appear among the novel classes. None of
  them has its mirror action among the novel classes (swipe left/right, circle cw/ccw and
  sit-to-stand/stand-to-sit stay in base), so meta-training sees those fine distinctions and
  the novel classes are distinct from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

UTD_TRAIN_SUBJECTS: tuple[int, ...] = (1, 3, 5)
UTD_TEST_SUBJECTS: tuple[int, ...] = (2, 4, 6)
FSDD_TRAIN_SPEAKERS: tuple[str, ...] = ("george", "jackson", "lucas")
FSDD_TEST_SPEAKERS: tuple[str, ...] = ("nicolas",)
#: Novel UTD-MHAD actions (1-based action numbers); see the module docstring for the choice.
UTD_NOVEL_ACTIONS: tuple[int, ...] = (4, 8, 13, 17, 23, 27)
UTD_NUM_CLASSES = 27


@dataclass(frozen=True)
class ClassSplit:
    """Base and novel classes (0-based labels of the full label space)."""

    base: tuple[int, ...]
    novel: tuple[int, ...]

    def __post_init__(self) -> None:
        overlap = set(self.base) & set(self.novel)
        if overlap:
            raise ValueError(f"ClassSplit: classes {sorted(overlap)} are both base and novel")

    def base_index(self, label: int) -> int:
        """Position of ``label`` among the base classes (for a base-only classifier head)."""
        return self.base.index(label)

    def novel_index(self, label: int) -> int:
        """Position of ``label`` among the novel classes."""
        return self.novel.index(label)

    def indices(self, labels: Sequence[int]) -> tuple[list[int], list[int]]:
        """Positions in ``labels`` whose class is base, and those whose class is novel."""
        base, novel = set(self.base), set(self.novel)
        return [i for i, y in enumerate(labels) if y in base], [i for i, y in enumerate(labels) if y in novel]


def utd_class_split(novel_actions: Iterable[int] = UTD_NOVEL_ACTIONS) -> ClassSplit:
    """UTD-MHAD base/novel split from 1-based novel action numbers (default: the documented 6)."""
    novel = sorted({int(a) - 1 for a in novel_actions})
    bad = [a + 1 for a in novel if not 0 <= a < UTD_NUM_CLASSES]
    if bad:
        raise ValueError(f"utd_class_split: action numbers {bad} are outside 1..{UTD_NUM_CLASSES}")
    return ClassSplit(tuple(c for c in range(UTD_NUM_CLASSES) if c not in novel), tuple(novel))


def random_class_split(num_classes: int, num_novel: int, seed: int = 0) -> ClassSplit:
    """A seeded random base/novel split of ``range(num_classes)``."""
    if not 0 < num_novel < num_classes:
        raise ValueError(f"random_class_split: need 0 < num_novel ({num_novel}) < num_classes ({num_classes})")
    novel = sorted(np.random.default_rng(seed).choice(num_classes, num_novel, replace=False).tolist())
    return ClassSplit(tuple(c for c in range(num_classes) if c not in novel), tuple(novel))


@dataclass(frozen=True)
class GroupSplit:
    """Which subjects (or speakers) are for training and which for testing."""

    train: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        overlap = set(self.train) & set(self.test)
        if overlap:
            raise ValueError(f"GroupSplit: {sorted(overlap)} are in both train and test")

    def split_of(self, group: str) -> str | None:
        """``"train"``, ``"test"`` or None for a subject in neither."""
        g = str(group)
        return "train" if g in self.train else "test" if g in self.test else None


def utd_subject_split(
    train: Iterable[int] = UTD_TRAIN_SUBJECTS, test: Iterable[int] = UTD_TEST_SUBJECTS
) -> GroupSplit:
    """UTD-MHAD cross-subject split (default train 1, 3, 5 / test 2, 4, 6)."""
    return GroupSplit(tuple(str(s) for s in train), tuple(str(s) for s in test))


def fsdd_speaker_split(
    train: Iterable[str] = FSDD_TRAIN_SPEAKERS, test: Iterable[str] = FSDD_TEST_SPEAKERS
) -> GroupSplit:
    """FSDD cross-speaker split (default train george, jackson, lucas / test nicolas)."""
    return GroupSplit(tuple(train), tuple(test))


def parse_int_list(text: str) -> list[int]:
    """``"1,3,5"`` or ``"1-3,5"`` → ``[1, 2, 3, 5]``; ValueError naming the bad part."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"not a number or range: {part!r} in {text!r}") from None
    return out
