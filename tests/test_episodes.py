"""Episode sampler: disjoint support/query, reproducibility, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.episodes import EpisodeSampler

LABELS = [c for c in range(8) for _ in range(12)]  # 8 classes × 12 clips


def test_episode_shapes_and_no_query_in_support() -> None:
    labels = np.asarray(LABELS)
    sampler = EpisodeSampler(LABELS, way=5, shot=3, query=4, episodes=500, seed=1)
    seen_classes = set()
    for support, query, classes in sampler:
        assert support.shape == (15,) and query.shape == (20,) and classes.shape == (5,)
        assert len(set(classes.tolist())) == 5
        assert not set(support.tolist()) & set(query.tolist())
        assert len(set(support.tolist())) == 15 and len(set(query.tolist())) == 20
        # Grouped by class in episode order.
        assert (labels[support].reshape(5, 3) == classes[:, None]).all()
        assert (labels[query].reshape(5, 4) == classes[:, None]).all()
        seen_classes.update(classes.tolist())
    assert seen_classes == set(range(8))
    assert len(sampler) == 500


def test_reproducible_for_a_seed_and_varies_with_seed_and_epoch() -> None:
    def run(seed: int, epoch: int = 0) -> list[list[int]]:
        s = EpisodeSampler(LABELS, way=3, shot=2, query=2, episodes=20, seed=seed)
        s.set_epoch(epoch)
        return [np.concatenate(e).tolist() for e in s]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert run(7, epoch=1) != run(7, epoch=0)
    assert run(7, epoch=1) == run(7, epoch=1)


def test_restricted_classes() -> None:
    sampler = EpisodeSampler(LABELS, way=2, shot=1, query=1, episodes=50, seed=0, classes=[6, 7])
    for _, _, classes in sampler:
        assert sorted(classes.tolist()) == [6, 7]


def test_error_names_short_class() -> None:
    labels = LABELS + [9, 9, 9]
    with pytest.raises(ValueError, match=r"class 9: 3"):
        EpisodeSampler(labels, way=5, shot=2, query=2)
    with pytest.raises(ValueError, match=r"5-way episodes need 5 classes, only 2"):
        EpisodeSampler(LABELS, way=5, shot=1, query=1, classes=[0, 1])


def test_cross_group_episodes_take_queries_from_one_group_and_support_from_the_others() -> None:
    labels = np.asarray(LABELS)
    groups = [f"s{i % 3}" for i in range(len(LABELS))]  # 3 subjects, 4 clips of every class each
    group_of = np.asarray(groups)
    sampler = EpisodeSampler(LABELS, way=5, shot=5, query=4, episodes=300, seed=3, groups=groups)
    query_groups = set()
    for support, query, classes in sampler:
        assert support.shape == (25,) and query.shape == (20,)
        assert (labels[support].reshape(5, 5) == classes[:, None]).all()
        assert (labels[query].reshape(5, 4) == classes[:, None]).all()
        assert len(set(group_of[query].tolist())) == 1
        assert group_of[query[0]] not in set(group_of[support].tolist())
        assert len(set(support.tolist())) == 25
        query_groups.add(str(group_of[query[0]]))
    assert query_groups == {"s0", "s1", "s2"}
    plain = [np.concatenate(e).tolist() for e in EpisodeSampler(LABELS, way=5, shot=5, query=4, episodes=5, seed=3)]
    assert plain != [np.concatenate(e).tolist() for e in list(sampler)[:5]]


def test_cross_group_episodes_need_enough_clips_per_group() -> None:
    groups = [f"s{i % 3}" for i in range(len(LABELS))]
    with pytest.raises(ValueError, match="no group has 5 classes with 5 query clips"):
        EpisodeSampler(LABELS, way=5, shot=5, query=5, episodes=5, groups=groups)
    with pytest.raises(ValueError, match="groups for"):
        EpisodeSampler(LABELS, way=5, shot=5, query=4, groups=groups[:-1])
