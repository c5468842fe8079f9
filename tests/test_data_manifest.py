"""Manifest reader on a synthetic mp4 (video + AAC audio track, written with PyAV) and an IMU CSV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from trainer.data.cache import Cache
from trainer.data.clip import DataError, validate_stream
from trainer.data.manifest import ManifestDataset, read_manifest

FPS, SR, DUR = 10, 16000, 4.0
STEP_T = 2.0  # audio amplitude steps from 0.1 to 0.6 here


def _write_mp4(path: Path) -> None:
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=FPS)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.options = {"qscale": "1"}
        v.codec_context.qmin = 1
        v.codec_context.qmax = 2
        a = out.add_stream("aac", rate=SR)
        a.layout = "mono"
        for i in range(int(DUR * FPS)):
            img = np.full((48, 64, 3), 5 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        t = np.arange(int(DUR * SR)) / SR
        wave = np.where(t < STEP_T, 0.1, 0.6) * np.sin(2 * np.pi * 440 * t)
        n = 1024
        for k in range(0, len(wave), n):
            chunk = wave[k : k + n].astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = SR
            frame.pts = k
            frame.time_base = Fraction(1, SR)
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)


def _write_imu(path: Path) -> None:
    t = np.arange(0, DUR, 0.01)
    cols = np.stack([t, t, np.zeros_like(t), np.ones_like(t), np.full_like(t, 10.0), -t, np.zeros_like(t)], 1)
    np.savetxt(path, cols, delimiter=",", header="t,ax,ay,az,gx,gy,gz", comments="", fmt="%.5f")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("manifest")
    _write_mp4(d / "clip.mp4")
    _write_imu(d / "clip_imu.csv")
    return d


def _check_clip(clip, start: float = 1.5, end: float = 3.0) -> None:
    for m in ("video", "audio", "imu"):
        validate_stream(m, clip.streams[m], clip.clip_id)
    video, audio, imu = clip.streams["video"], clip.streams["audio"], clip.streams["imu"]
    # Video: frames at k/10 s in [1.5, 3.0) → 15 frames, re-based to 0, RGB gray level 5*k.
    assert video.data.shape == (15, 48, 64, 3)
    np.testing.assert_allclose(video.timestamps, np.arange(15) / FPS, atol=1e-6)
    levels = video.data.reshape(15, -1).mean(1)
    np.testing.assert_allclose(levels, 5 * np.arange(15, 30), atol=3)
    assert video.rate == pytest.approx(FPS)
    # Audio: 1.5 s of 16 kHz, the amplitude step lands 0.5 s into the clip.
    assert audio.rate == SR
    assert abs(len(audio) - (end - start) * SR) <= 2
    assert audio.timestamps[0] == pytest.approx(0.0, abs=1 / SR)
    env = np.sqrt(np.convolve(audio.data[:, 0] ** 2, np.ones(160) / 160, mode="same"))
    step = audio.timestamps[np.argmax(env > 0.25)]
    assert step == pytest.approx(STEP_T - start, abs=0.02)
    assert env[: int(0.4 * SR)].mean() == pytest.approx(0.1 / np.sqrt(2), rel=0.15)
    # IMU: 100 Hz rows of [1.5, 3.0), accel x equals the original time.
    assert imu.data.shape == (150, 6)
    assert imu.timestamps[0] == pytest.approx(0.0) and imu.timestamps[-1] == pytest.approx(1.49)
    np.testing.assert_allclose(imu.data[:, 0], imu.timestamps + start, atol=1e-4)
    np.testing.assert_allclose(imu.data[0, 3:], [10.0, -start, 0.0], atol=1e-4)
    assert imu.rate == pytest.approx(100.0)


def test_csv_manifest(media: Path, tmp_path: Path) -> None:
    man = media / "m.csv"
    man.write_text(
        "video,imu,start,end,label,subject\n"
        "clip.mp4,clip_imu.csv,1.5,3.0,wave,p01\n"
        "clip.mp4,,0,1,clap,p01\n"
    )
    ds = ManifestDataset(man)
    assert ds.class_names == ("clap", "wave") and ds.labels == [1, 0]
    clip = ds[0]
    _check_clip(clip)
    assert (clip.label, clip.label_name, clip.subject, clip.source) == (1, "wave", "p01", "manifest")
    assert ds[1].modalities == ("video", "audio")


def test_jsonl_manifest_units_and_cache(media: Path, tmp_path: Path) -> None:
    rows = [
        {"video": str(media / "clip.mp4"), "imu": str(media / "clip_imu.csv"), "start": 1.5, "end": 3.0, "label": 2},
        {"video": "", "imu": str(media / "clip_imu.csv"), "start": 0, "end": 1, "label": 0,
         "accel_unit": "m/s2", "gyro_unit": "rad/s", "clip_id": "imu_only", "split": "test"},
    ]
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cache = Cache(tmp_path / "cache")
    ds = ManifestDataset(man, cache=cache)
    assert ds.class_names == ("0", "1", "2")
    _check_clip(ds[0])
    _check_clip(ds[0])
    assert (cache.hits, cache.misses) == (1, 1)
    imu_only = ds[1]
    assert imu_only.modalities == ("imu",) and imu_only.split == "test" and imu_only.clip_id == "imu_only"
    np.testing.assert_allclose(imu_only.streams["imu"].data[:, 3], 10.0 * 180 / np.pi, rtol=1e-5)
    np.testing.assert_allclose(imu_only.streams["imu"].data[:, 0], imu_only.streams["imu"].timestamps / 9.80665,
                               atol=1e-5)


def test_bad_rows_and_files(media: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("video,imu,start,end,label\nclip.mp4,,2,1,x\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: end \(1\.0\) must be after start"):
        read_manifest(bad)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "imu_bad.csv").write_text("t,a,b,c,d,e,f\n0,1,2,3,4,5,x\n")
    man = tmp_path / "m.csv"
    man.write_text(
        "video,imu,start,end,label\n"
        "junk.mp4,,0,1,a\n"
        ",imu_bad.csv,0,1,a\n"
        "missing.mp4,,0,1,a\n"
        f"{media / 'clip.mp4'},{media / 'clip_imu.csv'},1.5,3.0,a\n"
    )
    ds = ManifestDataset(man)
    clips = list(ds)
    assert len(clips) == 1
    _check_clip(clips[0])
    reasons = [r for _, r in ds.skipped]
    assert len(reasons) == 3
    assert "junk.mp4" in reasons[0] and "imu_bad.csv:2: not numbers" in reasons[1]
    assert "missing.mp4: video file is missing" in reasons[2]
