"""mmg_common: crash-safe writes and one-line error messages."""

from __future__ import annotations

import json
import os

import pytest

from mmg_common import MODALITIES, atomic_write, atomic_write_json, one_line


def test_atomic_write_json_replaces_the_file_with_the_mode_open_would_give(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o600)  # a file the user made private stays private
    atomic_write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2} and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"old": True})

    def explode(f) -> None:
        f.write(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, explode)
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_one_line_collapses_whitespace_and_falls_back_to_the_type():
    assert one_line(ValueError("bad\n  value\tthere")) == "bad value there"
    assert one_line(RuntimeError()) == "RuntimeError"
    assert one_line(ValueError("x" * 50), limit=10) == "x" * 10
    assert MODALITIES == ("video", "audio", "imu", "pose")
