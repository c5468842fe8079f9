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
    src.write_bytes(b"abcd")  # new content
    third = cache.cached({"file": file_key(src), "cfg": "a"}, compute)
    assert len(calls) == 3 and third["x"].tolist() == [97, 98, 99, 100]
    assert not [p for p in (tmp_path / "cache").rglob(".*") if p.is_file()]  # atomic write leaves no temp files


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
    imu = Stream(np.ones((4, 6), np.float32), np.arange(4) / 50, 50.0)
    clip = Clip("c1", {"imu": imu}, None, None, "s", "1", None, "x")
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
    # A dataset restored in place (new mtime, same bytes) keeps its entry ...
    imu_file = root / "Inertial" / ref.inertial_path.name
    st = os.stat(imu_file)
    os.utime(imu_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    utd.UtdMhadDataset(root, [1], cache=cache)[0]
    assert len(calls) == 1
    # ... and changed content invalidates it.
    import scipy.io

    mat = scipy.io.loadmat(str(imu_file))
    scipy.io.savemat(str(imu_file), {"d_iner": mat["d_iner"] * 2})
    changed = utd.UtdMhadDataset(root, [1], cache=cache)[0]
    assert len(calls) == 2
    assert not np.allclose(changed.streams["imu"].data, a.streams["imu"].data)


def _entry(cache: Cache, name: str, nbytes: int, used_at_s: int) -> Path:
    cache.cached({"name": name}, lambda: {"x": np.zeros(nbytes, np.uint8)})
    path = cache.path_for({"name": name})
    os.utime(path, ns=(used_at_s * 10**9, used_at_s * 10**9))
    return path


def test_write_over_the_limit_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=None)
    paths = {n: _entry(cache, n, 100_000, t) for n, t in [("a", 100), ("b", 200), ("c", 300)]}
    entry_bytes = paths["a"].stat().st_size
    # A hit marks "a" as just used: "b" is now the oldest.
    cache.cached({"name": "a"}, lambda: pytest.fail("hit expected"))
    bounded = Cache(tmp_path, max_bytes=int(3.5 * entry_bytes))
    bounded.cached({"name": "d"}, lambda: {"x": np.zeros(100_000, np.uint8)})  # 4 entries > 3.5
    left = {n for n in "abcd" if bounded.path_for({"name": n}).exists()}
    # Pruned to 80 % of the limit (2.8 entries): the two least recently used go.
    assert left == {"a", "d"} and bounded.evicted == 2
    assert bounded.usage() == bounded.usage().__class__(2, 2 * entry_bytes)


def test_prune_and_clear_spare_other_files_and_fresh_temporaries(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=None)
    for i in range(3):
        _entry(cache, str(i), 1000, 100 + i)
    demo = tmp_path / "demo" / "session"
    demo.mkdir(parents=True)
    (demo / "video.npz").write_bytes(b"not a cache entry")
    shard = cache.path_for({"name": "0"}).parent
    fresh_tmp = shard / ".tmp-writing.npz"
    fresh_tmp.write_bytes(b"x" * 10)
    stale_tmp = shard / ".tmp-crashed.npz"
    stale_tmp.write_bytes(b"x" * 10)
    os.utime(stale_tmp, ns=(0, 0))
    removed = cache.prune(0)
    assert removed.entries == 4  # three entries and the stale temporary
    assert (demo / "video.npz").exists() and fresh_tmp.exists() and not stale_tmp.exists()
    assert cache.clear().entries == 0


def test_prune_removes_stale_atomic_write_temporaries_only(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=None)
    entry = _entry(cache, "a", 1000, 100)
    fresh_tmp = entry.with_name(f".{entry.name}.writing.tmp")
    fresh_tmp.write_bytes(b"x" * 10)
    stale_tmp = entry.with_name(f".{entry.name}.crashed.tmp")
    stale_tmp.write_bytes(b"x" * 10)
    os.utime(stale_tmp, ns=(0, 0))
    assert cache.usage().entries == 2  # the entry and the stale temporary
    assert cache.prune(0).entries == 2
    assert fresh_tmp.exists() and not stale_tmp.exists() and not entry.exists()


def test_limit_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MMG_CACHE_MAX_GB", raising=False)
    assert Cache(tmp_path).max_bytes == 20 * 10**9
    monkeypatch.setenv("MMG_CACHE_MAX_GB", "0.5")
    assert Cache(tmp_path).max_bytes == 5 * 10**8
    monkeypatch.setenv("MMG_CACHE_MAX_GB", "0")
    assert Cache(tmp_path).max_bytes is None
    for bad in ("lots", "-1"):
        monkeypatch.setenv("MMG_CACHE_MAX_GB", bad)
        with pytest.raises(ValueError, match="MMG_CACHE_MAX_GB"):
            Cache(tmp_path)


def test_large_files_are_keyed_by_mtime_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.data.cache as cache_module

    monkeypatch.setattr(cache_module, "CONTENT_HASH_MAX_BYTES", 4)
    big = tmp_path / "big.bin"
    big.write_bytes(b"0123456789")
    key = file_key(big)
    assert "sha256" not in key and key["mtime_ns"] == big.stat().st_mtime_ns
    small = tmp_path / "small.bin"
    small.write_bytes(b"012")
    assert file_key(small)["sha256"] == __import__("hashlib").sha256(b"012").hexdigest()


def test_mmg_data_cache_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trainer.data.cli import main

    cache = Cache(tmp_path, max_bytes=None)
    for i in range(4):
        _entry(cache, str(i), 250_000, 100 + i)
    assert main(["cache", "--dir", str(tmp_path)]) == 0
    assert "4 entries, 0.00 GB" in capsys.readouterr().out
    assert main(["cache", "--dir", str(tmp_path), "--prune-to", "0.0006"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 entries" in out and "2 entries" in out
    assert not cache.path_for({"name": "0"}).exists() and cache.path_for({"name": "3"}).exists()
    assert main(["cache", "--dir", str(tmp_path), "--clear"]) == 0
    assert "0 entries" in capsys.readouterr().out
    assert main(["cache", "--dir", str(tmp_path), "--prune-to", "-1"]) == 1
    assert "--prune-to" in capsys.readouterr().err
