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
    ) -> None:
        if way < 1 or shot < 1 or query < 0 or episodes < 0:
            raise ValueError(f"EpisodeSampler: need way>=1, shot>=1, query>=0, episodes>=0 (got {way}, {shot}, {query}, {episodes})")
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

    def set_epoch(self, epoch: int) -> None:
        """Draw a different (but still reproducible) set of episodes for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.episodes):
            cls = rng.choice(self.classes, self.way, replace=False)
            support, query = [], []
            for c in cls:
                picked = rng.choice(self._by_class[int(c)], self.shot + self.query, replace=False)
                support.append(picked[: self.shot])
                query.append(picked[self.shot :])
            yield np.concatenate(support), np.concatenate(query), cls
