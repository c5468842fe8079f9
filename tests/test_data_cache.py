"""Cache: second load does not decode again; a changed file invalidates the entry."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import trainer.data.utd_mhad as utd
from trainer.data.cache import Cache, cached, config_hash, default_cache_dir, file_key
from trainer.data.clip import Clip, Stream, arrays_to_clip, clip_to_arrays


def test_cached_counts_compute_calls_and_invalidates(tmp_path: Path) -> None:
    src = tmp_path / "source.bin"
    src.write_bytes(b"abc")
    cache = Cache(tmp_path / "cache")
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.frombuffer(src.read_bytes(), np.uint8).copy()}

    first = cache.cached({"file": file_key(src), "cfg": "a"}, compute)
    second = cache.cached({"file": file_key(src), "cfg": "a"}, compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first["x"], second["x"])
    cache.cached({"file": file_key(src), "cfg": "b"}, compute)  # other preprocessing config
    assert len(calls) == 2
    src.write_bytes(b"abcd")  # size + mtime change
    third = cache.cached({"file": file_key(src), "cfg": "a"}, compute)
    assert len(calls) == 3 and third["x"].tolist() == [97, 98, 99, 100]
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # atomic write leaves no temp files


def test_corrupt_entry_is_recomputed(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = {"k": 1}
    cache.cached(key, lambda: {"x": np.ones(3)})
    cache.path_for(key).write_bytes(b"broken")
    out = cache.cached(key, lambda: {"x": np.zeros(3)})
    assert out["x"].tolist() == [0, 0, 0]


def test_default_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMG_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    key = {"clip": "a1_s1_t1", "preprocess": config_hash({"frames": 16, "size": 64})}
    assert config_hash({"size": 64, "frames": 16}) == key["preprocess"]  # order-independent
    cached(key, lambda: {"x": np.arange(3)})
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 1
    assert cached(key, lambda: {"x": np.zeros(1)})["x"].tolist() == [0, 1, 2]
    monkeypatch.delenv("MMG_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "mmg-live"


def test_clip_round_trip() -> None:
    clip = Clip("c1", {"imu": Stream(np.ones((4, 6), np.float32), np.arange(4) / 50, 50.0)}, None, None, "s", "1", None, "x")
    back = arrays_to_clip(clip_to_arrays(clip))
    assert (back.clip_id, back.label, back.label_name, back.split, back.source) == ("c1", None, None, None, "x")
    np.testing.assert_array_equal(back.streams["imu"].timestamps, clip.streams["imu"].timestamps)
    assert back.streams["imu"].rate == 50.0


def test_utd_dataset_uses_cache(tmp_path: Path, utd_mhad_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "utd"
    for sub in ("Depth", "Inertial"):
        (root / sub).mkdir(parents=True)
    ref = utd.list_trials(utd_mhad_dir, subjects=[1], actions=[2])[0]
    shutil.copy(ref.depth_path, root / "Depth" / ref.depth_path.name)
    shutil.copy(ref.inertial_path, root / "Inertial" / ref.inertial_path.name)
    calls = []
    real = utd.load_trial
    monkeypatch.setattr(utd, "load_trial", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = Cache(tmp_path / "cache")
    a = utd.UtdMhadDataset(root, [1], cache=cache)[0]
    b = utd.UtdMhadDataset(root, [1], cache=cache)[0]
    assert len(calls) == 1
    np.testing.assert_array_equal(a.streams["video"].data, b.streams["video"].data)
    assert (b.label, b.label_name, b.subject) == (1, "swipe right", "1")
    # Touching the IMU file (new mtime) invalidates the entry.
    st = os.stat(root / "Inertial" / ref.inertial_path.name)
    os.utime(root / "Inertial" / ref.inertial_path.name, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    utd.UtdMhadDataset(root, [1], cache=cache)[0]
    assert len(calls) == 2
