"""N-way K-shot episode sampling with fixed seeds."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator, Sequence

import numpy as np


class EpisodeSampler:
    """Yields few-shot episodes ``(support_indices, query_indices, episode_classes)``.

    Each episode draws ``way`` classes, then ``shot + query`` distinct clips of each class
    without replacement, so a query clip is never in the support set. Support indices come
    grouped by class in ``episode_classes`` order (``shot`` each), queries likewise (``query``
    each). Iterating twice gives the same episodes; :meth:`set_epoch` varies them per epoch.

    Args:
        labels: class label of every clip (dataset order).
        way: classes per episode.
        shot: support clips per class.
        query: query clips per class.
        episodes: episodes per iteration.
        seed: base seed.
        classes: classes to draw from (e.g. the base classes); default all in ``labels``.
        groups: optional group (subject, speaker) of every clip. Then each episode takes its
            queries from one group and its support from the others, as a new person is met at
            test time; an episode's classes are drawn among those with ``shot`` clips outside
            and ``query`` clips inside its query group.

    Raises:
        ValueError: fewer than ``way`` classes, or a class with fewer than ``shot + query`` clips
            (the message names the classes and their counts).
    """

    def __init__(
        self,
        labels: Sequence[int],
        way: int = 5,
        shot: int = 5,
        query: int = 15,
        episodes: int = 100,
        seed: int = 0,
        classes: Iterable[int] | None = None,
        groups: Sequence[str] | None = None,
    ) -> None:
        if way < 1 or shot < 1 or query < 0 or episodes < 0:
            raise ValueError(f"EpisodeSampler: need way>=1, shot>=1, query>=0, episodes>=0 "
                             f"(got {way}, {shot}, {query}, {episodes})")
        by_class: dict[int, list[int]] = defaultdict(list)
        for i, y in enumerate(labels):
            by_class[int(y)].append(i)
        chosen = sorted(by_class) if classes is None else sorted({int(c) for c in classes})
        short = {c: len(by_class.get(c, [])) for c in chosen if len(by_class.get(c, [])) < shot + query}
        if short:
            detail = ", ".join(f"class {c}: {n}" for c, n in short.items())
            raise ValueError(f"EpisodeSampler: need shot+query={shot + query} clips per class; too few for {detail}")
        if len(chosen) < way:
            raise ValueError(f"EpisodeSampler: {way}-way episodes need {way} classes, only {len(chosen)} available")
        self.way, self.shot, self.query, self.episodes, self.seed = way, shot, query, episodes, seed
        self.classes = np.asarray(chosen, dtype=np.int64)
        self._by_class = {c: np.asarray(by_class[c], dtype=np.int64) for c in chosen}
        self.epoch = 0
        self._query_groups: list[tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]] = []
        if groups is not None:
            if len(groups) != len(labels):
                raise ValueError(f"EpisodeSampler: {len(groups)} groups for {len(labels)} labels")
            group_of = np.asarray([str(g) for g in groups])
            for g in sorted(set(group_of.tolist())):
                inside = {c: idx[group_of[idx] == g] for c, idx in self._by_class.items()}
                outside = {c: idx[group_of[idx] != g] for c, idx in self._by_class.items()}
                usable = [c for c in chosen if len(inside[c]) >= query and len(outside[c]) >= shot]
                if len(usable) >= way:
                    self._query_groups.append((np.asarray(usable, dtype=np.int64), outside, inside))
            if not self._query_groups:
                raise ValueError(f"EpisodeSampler: no group has {way} classes with {query} query clips in it "
                                 f"and {shot} support clips in the other groups")

    def set_epoch(self, epoch: int) -> None:
        """Draw a different (but still reproducible) set of episodes for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.episodes):
            if self._query_groups:
                yield self._cross_group_episode(rng)
                continue
            cls = rng.choice(self.classes, self.way, replace=False)
            support, query = [], []
            for c in cls:
                picked = rng.choice(self._by_class[int(c)], self.shot + self.query, replace=False)
                support.append(picked[: self.shot])
                query.append(picked[self.shot :])
            yield np.concatenate(support), np.concatenate(query), cls

    def _cross_group_episode(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        usable, outside, inside = self._query_groups[int(rng.integers(len(self._query_groups)))]
        cls = rng.choice(usable, self.way, replace=False)
        support = [rng.choice(outside[int(c)], self.shot, replace=False) for c in cls]
        query = [rng.choice(inside[int(c)], self.query, replace=False) for c in cls]
        return np.concatenate(support), np.concatenate(query), cls
