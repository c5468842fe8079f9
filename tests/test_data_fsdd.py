"""FSDD reader on real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from trainer.data.clip import DataError, validate_stream
from trainer.data.fsdd import FsddDataset, list_recordings


def test_list_and_load_real_recording(fsdd_dir: Path) -> None:
    recs = list_recordings(fsdd_dir, speakers=["jackson"])
    assert len(recs) == 500 and {r.speaker for r in recs} == {"jackson"}
    assert sorted({r.digit for r in recs}) == list(range(10))
    ds = FsddDataset(fsdd_dir, speakers=["lucas"], split="test")
    clip = ds[ds.recordings.index(next(r for r in ds.recordings if r.clip_id == "7_lucas_3"))]
    raw, sr = soundfile.read(fsdd_dir / "recordings" / "7_lucas_3.wav", dtype="int16")
    audio = clip.streams["audio"]
    validate_stream("audio", audio, clip.clip_id)
    assert sr == 8000 and audio.rate == 8000.0
    np.testing.assert_allclose(audio.data[:, 0], raw / 32768.0, atol=1e-6)
    assert audio.timestamps[0] == 0.0 and audio.timestamps[-1] == pytest.approx((len(raw) - 1) / 8000)
    assert (clip.label, clip.label_name, clip.subject, clip.session, clip.split) == (7, "7", "lucas", "3", "test")
    assert ds.speakers == ["lucas"]


def test_bad_files_skipped(tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    rec.mkdir()
    t = np.arange(800) / 8000
    soundfile.write(rec / "3_amy_0.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="PCM_16")
    (rec / "4_amy_0.wav").write_bytes(b"RIFF....garbage")
    (rec / "notes.txt").write_text("ignored")
    ds = FsddDataset(tmp_path)
    assert len(ds) == 2
    clips = list(ds)
    assert [c.clip_id for c in clips] == ["3_amy_0"]
    assert abs(clips[0].streams["audio"].data).max() == pytest.approx(0.5, abs=1e-3)
    assert ds.skipped[0][0] == "4_amy_0" and "4_amy_0.wav: cannot read audio" in ds.skipped[0][1]
    with pytest.raises(DataError, match="4_amy_0.wav"):
        ds[0 if ds.recordings[0].digit == 4 else 1]
