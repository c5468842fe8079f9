"""Subject/speaker splits and the documented UTD-MHAD base/novel split."""

from __future__ import annotations

import pytest

from trainer.data.splits import (
    ClassSplit,
    fsdd_speaker_split,
    parse_int_list,
    random_class_split,
    utd_class_split,
    utd_subject_split,
)


def test_utd_default_class_split_is_21_6_with_wrist_and_thigh() -> None:
    s = utd_class_split()
    assert len(s.base) == 21 and len(s.novel) == 6
    assert sorted(s.base + s.novel) == list(range(27))
    actions = [c + 1 for c in s.novel]
    assert actions == [4, 8, 13, 17, 23, 27]
    assert any(a <= 21 for a in actions) and any(a >= 22 for a in actions)
    assert s.base_index(0) == 0 and s.novel_index(26) == 5
    base, novel = s.indices([0, 3, 26, 5])
    assert (base, novel) == ([0, 3], [1, 2])


def test_custom_and_random_class_splits() -> None:
    assert utd_class_split([1, 22]).novel == (0, 21)
    with pytest.raises(ValueError, match=r"\[28\]"):
        utd_class_split([28])
    r = random_class_split(10, 3, seed=4)
    assert r == random_class_split(10, 3, seed=4) and len(r.novel) == 3 and len(r.base) == 7
    with pytest.raises(ValueError, match="both base and novel"):
        ClassSplit((1, 2), (2,))


def test_group_splits() -> None:
    s = utd_subject_split()
    assert s.train == ("1", "3", "5") and s.test == ("2", "4", "6")
    assert s.split_of("3") == "train" and s.split_of(4) == "test" and s.split_of("7") is None
    f = fsdd_speaker_split()
    assert f.split_of("nicolas") == "test" and f.split_of("george") == "train"
    with pytest.raises(ValueError, match="both train and test"):
        utd_subject_split([1, 2], [2])


def test_parse_int_list() -> None:
    assert parse_int_list("1,3-5, 8") == [1, 3, 4, 5, 8]
    with pytest.raises(ValueError, match="'x'"):
        parse_int_list("1,x")
