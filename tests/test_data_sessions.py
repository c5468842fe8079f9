"""Session folders → Clips, and the UTD-MHAD import round trip through the real SessionWriter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from devices.base import Chunk
from devices.session import SessionWriter
from trainer.data.cache import Cache
from trainer.data.clip import DataError
from trainer.data.importer import import_utd_mhad
from trainer.data.sessions import SessionDataset, list_sessions, load_session
from trainer.data.utd_mhad import ACTIONS, list_trials, load_trial


def _record(folder: Path) -> None:
    """A 2 s live-like session at host time 100 s: gray video 10 fps, audio 8 kHz, imu 50 Hz."""
    with SessionWriter(folder, {"audio": {"rate": 8000}, "video": {"fps": 10}}) as w:
        t_v = 100.0 + np.arange(20) / 10
        frames = (np.arange(20, dtype=np.uint8)[:, None, None, None] * 10).repeat(8, 1).repeat(8, 2)
        w.write(Chunk("video", t_v, frames, "video"))
        for b in range(4):
            t_a = 100.0 + (b * 4000 + np.arange(4000)) / 8000
            w.write(Chunk("audio", t_a, (np.sin(t_a * 50)[:, None] * 0.5).astype(np.float32), "audio"))
        t_i = 100.0 + np.arange(100) / 50
        imu = np.column_stack([t_i - 100.0] + [np.zeros(100)] * 5).astype(np.float32)
        w.write(Chunk("imu", t_i, imu, "imu"))
        w.add_segment("wave", 100.5, 101.0)
        w.add_segment("clap", 101.2, 101.9)


def test_live_session_segments(tmp_path: Path) -> None:
    _record(tmp_path / "s1")
    clips = load_session(tmp_path / "s1")
    assert [c.label_name for c in clips] == ["wave", "clap"]
    assert [c.label for c in clips] == [1, 0]  # sorted classes: clap, wave
    wave = clips[0]
    assert wave.modalities == ("video", "audio", "imu") and wave.session == "s1" and wave.source == "session"
    v, a, i = (wave.streams[m] for m in ("video", "audio", "imu"))
    # Video frames 5..10 (t = 100.5 .. 101.0 inclusive), re-based to 0.
    np.testing.assert_allclose(v.timestamps, np.arange(6) / 10, atol=1e-9)
    assert v.data[:, 0, 0, 0].tolist() == [50, 60, 70, 80, 90, 100] and v.data.shape[1:] == (8, 8, 1)
    assert a.rate == 8000 and abs(len(a) - 4001) <= 1 and a.timestamps[0] == pytest.approx(0.0, abs=1e-3)
    assert a.data.dtype == np.float32 and a.data.shape[1] == 1
    assert len(i) == 26 and i.data[0, 0] == pytest.approx(0.5) and i.timestamps[-1] == pytest.approx(0.5)


def test_dataset_over_folders_with_a_broken_one(tmp_path: Path) -> None:
    _record(tmp_path / "a" / "s1")
    _record(tmp_path / "b" / "s2")
    (tmp_path / "b" / "bad").mkdir()
    (tmp_path / "b" / "bad" / "session.json").write_text("{not json")
    ds = SessionDataset([tmp_path / "a", tmp_path / "b"], class_names=["wave", "clap", "other"], modalities=("imu",))
    assert len(ds) == 4 and ds.labels == [0, 1, 0, 1]
    assert ds.skipped and "session.json" in ds.skipped[0][1]
    clips = list(ds)
    assert [c.clip_id for c in clips] == ["s1#0", "s1#1", "s2#0", "s2#1"]
    assert all(c.modalities == ("imu",) for c in clips)
    with pytest.raises(DataError, match="label 'wave' is not among the classes"):
        load_session(tmp_path / "a" / "s1", class_names=["clap"])
    assert list_sessions(tmp_path) == [tmp_path / "a" / "s1", tmp_path / "b" / "bad", tmp_path / "b" / "s2"]


def test_import_utd_mhad_round_trip(tmp_path: Path, utd_mhad_dir: Path) -> None:
    out = tmp_path / "sessions"
    report = import_utd_mhad(utd_mhad_dir, out, subjects=[1], actions=[3, 23])
    assert len(report.written) == 8 and not report.skipped
    meta = json.loads((out / "a23_s1_t2" / "session.json").read_text())
    assert meta["subject"] == "1" and meta["segments"][0]["label"] == "walk" and meta["closed"] is True
    ds = SessionDataset(out, class_names=ACTIONS, cache=Cache(tmp_path / "cache"))
    assert len(ds) == 8
    got = {c.session: c for c in ds}
    ref = list_trials(utd_mhad_dir, subjects=[1], actions=[23])[1]
    want = load_trial(ref)
    clip = got["a23_s1_t2"]
    assert (clip.label, clip.label_name, clip.subject) == (want.label, "walk", "1")
    for m in ("video", "imu"):
        np.testing.assert_array_equal(clip.streams[m].data, want.streams[m].data)  # identical pixels
        np.testing.assert_allclose(clip.streams[m].timestamps, want.streams[m].timestamps, atol=1e-12)
    # Running again never overwrites.
    again = import_utd_mhad(utd_mhad_dir, out, subjects=[1], actions=[3])
    assert not again.written and len(again.skipped) == 4 and "not overwritten" in again.skipped[0][1]
