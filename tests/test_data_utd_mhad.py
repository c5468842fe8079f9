"""UTD-MHAD reader on real trials, plus corrupt/missing files written to tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from trainer.data.clip import DataError, validate_stream
from trainer.data.utd_mhad import (
    ACTIONS,
    DEPTH_FAR_MM,
    DEPTH_NEAR_MM,
    TrialRef,
    UtdMhadDataset,
    depth_to_gray8,
    list_trials,
    load_trial,
)


def test_depth_to_gray8_fixed_mapping() -> None:
    d = np.array([0, 1, 500, DEPTH_NEAR_MM, 2400, DEPTH_FAR_MM, 9000], dtype=np.uint16)
    g = depth_to_gray8(d)
    assert g.dtype == np.uint8
    assert g.tolist() == [0, 255, 255, 255, 128, 1, 1]
    # Same pixels whatever else is in the array (no per-trial normalisation).
    assert depth_to_gray8(np.array([2400], np.uint16))[0] == depth_to_gray8(np.array([2400, 3900], np.uint16))[0]


def test_actions_are_the_27_from_the_readme() -> None:
    assert len(ACTIONS) == 27 and ACTIONS[0] == "swipe left" and ACTIONS[21] == "jog" and ACTIONS[26] == "squat"


def test_list_trials_filters(utd_mhad_dir: Path) -> None:
    trials = list_trials(utd_mhad_dir, subjects=[1], actions=[1, 27])
    assert [t.clip_id for t in trials] == [f"a{a}_s1_t{t}" for a in (1, 27) for t in (1, 2, 3, 4)]
    assert all(t.depth_path.is_file() and t.inertial_path.is_file() for t in trials)


def test_load_real_trial_aligned_by_normalised_time(utd_mhad_dir: Path) -> None:
    ref = list_trials(utd_mhad_dir, subjects=[2], actions=[22])[0]
    clip = load_trial(ref)
    raw_depth = scipy.io.loadmat(ref.depth_path)["d_depth"]
    raw_imu = scipy.io.loadmat(ref.inertial_path)["d_iner"]
    video, imu = clip.streams["video"], clip.streams["imu"]
    validate_stream("video", video, ref.clip_id)
    validate_stream("imu", imu, ref.clip_id)
    n, m = raw_depth.shape[2], raw_imu.shape[0]
    assert video.data.shape == (n, 240, 320, 1) and imu.data.shape == (m, 6)
    np.testing.assert_array_equal(video.data[3, :, :, 0], depth_to_gray8(raw_depth[:, :, 3]))
    np.testing.assert_allclose(imu.data, raw_imu.astype(np.float32))
    duration = n / 30.0
    assert video.timestamps[0] == 0.0 and imu.timestamps[0] == 0.0
    assert video.timestamps[1] == pytest.approx(1 / 30)
    assert imu.timestamps[-1] + duration / m == pytest.approx(duration)
    assert imu.rate == pytest.approx(m / duration)
    assert (clip.label, clip.label_name, clip.subject, clip.session, clip.source) == (21, "jog", "2", "1", "utd-mhad")
    # Subject in view: some pixels valid, and within the rendered range.
    valid = video.data[video.data > 0]
    assert valid.size > 1000 and 20 < valid.min() and valid.max() < 220


def test_corrupt_and_missing_files(tmp_path: Path, utd_mhad_dir: Path) -> None:
    (tmp_path / "Depth").mkdir()
    (tmp_path / "Inertial").mkdir()
    good = list_trials(utd_mhad_dir, subjects=[1], actions=[3])[0]
    shutil.copy(good.depth_path, tmp_path / "Depth" / "a3_s1_t1_depth.mat")
    shutil.copy(good.inertial_path, tmp_path / "Inertial" / "a3_s1_t1_inertial.mat")
    # Truncated depth file.
    blob = good.depth_path.read_bytes()
    (tmp_path / "Depth" / "a4_s1_t1_depth.mat").write_bytes(blob[: len(blob) // 3])
    shutil.copy(good.inertial_path, tmp_path / "Inertial" / "a4_s1_t1_inertial.mat")
    # Garbage inertial file.
    shutil.copy(good.depth_path, tmp_path / "Depth" / "a5_s1_t1_depth.mat")
    (tmp_path / "Inertial" / "a5_s1_t1_inertial.mat").write_bytes(b"this is not a MATLAB file\n" * 10)
    # Missing inertial file.
    shutil.copy(good.depth_path, tmp_path / "Depth" / "a6_s1_t1_depth.mat")

    trials = list_trials(tmp_path)
    assert [t.clip_id for t in trials] == ["a3_s1_t1", "a4_s1_t1", "a5_s1_t1", "a6_s1_t1"]
    with pytest.raises(DataError, match=r"a4_s1_t1_depth\.mat: cannot read"):
        load_trial(trials[1])
    with pytest.raises(DataError, match=r"a5_s1_t1_inertial\.mat: cannot read"):
        load_trial(trials[2])
    with pytest.raises(DataError, match=r"a6_s1_t1_inertial\.mat: file is missing"):
        load_trial(trials[3])
    # IMU-free clip of the trial without IMU still loads.
    assert load_trial(trials[3], modalities=("video",)).modalities == ("video",)

    ds = UtdMhadDataset(tmp_path, subjects=[1], split="train")
    clips = list(ds)
    assert [c.clip_id for c in clips] == ["a3_s1_t1"] and clips[0].split == "train"
    assert [s[0] for s in ds.skipped] == ["a4_s1_t1", "a5_s1_t1", "a6_s1_t1"]
    assert "a4_s1_t1_depth.mat" in ds.skipped[0][1]


def test_not_a_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a UTD-MHAD folder"):
        list_trials(tmp_path)


def test_dataset_labels_and_modalities(utd_mhad_dir: Path) -> None:
    ds = UtdMhadDataset(utd_mhad_dir, subjects=[5], actions=[9, 10], modalities=("imu",))
    assert len(ds) == 8 and ds.labels == [8] * 4 + [9] * 4
    clip = ds[5]
    assert clip.modalities == ("imu",) and clip.label_name == "draw circle (counter-clockwise)"
    with pytest.raises(ValueError, match="cannot load"):
        load_trial(TrialRef(1, 1, 1, Path("x"), Path("y")), modalities=("audio",))
