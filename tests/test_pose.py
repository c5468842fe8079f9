"""Pose: the MediaPipe estimator on real depth renders and colour frames, the pose preprocessing,
the live pose stream (latest frame wins), its recording and replay, and cached UTD-MHAD pose."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from devices.base import Chunk, SourceBase
from devices.session import SessionReader, SessionWriter
from mmg_live.modalities import PoseSpec, PreprocessError, preprocess_pose
from mmg_live.pose.estimator import DEPTH_POSE_FLOOR, PoseEstimator, PoseSettings, stretch_depth_render
from mmg_live.pose.landmarks import LEFT_HIP, LEFT_SHOULDER, RIGHT_HIP, RIGHT_SHOULDER
from mmg_live.pose.stream import PoseStream

pytest.importorskip("mediapipe")


def _colour_frames(path: Path, n: int, step: int = 1) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    cap.release()
    return np.stack(frames[::step])


def _torso_m(world: np.ndarray) -> np.ndarray:
    shoulders = world[:, [LEFT_SHOULDER, RIGHT_SHOULDER], :3].mean(axis=1)
    hips = world[:, [LEFT_HIP, RIGHT_HIP], :3].mean(axis=1)
    return np.linalg.norm(shoulders - hips, axis=1)


# ---- the estimator on real frames ---------------------------------------------------------------

def test_estimator_finds_the_subject_in_every_depth_render_of_a_trial(utd_mhad_dir):
    from trainer.data.utd_mhad import list_trials
    from trainer.data.utd_pose import TRAINING_POSE_SETTINGS, extract_trial_pose

    ref = list_trials(utd_mhad_dir, [1], [1])[0]
    with PoseEstimator(TRAINING_POSE_SETTINGS) as estimator:
        arrays = extract_trial_pose(ref, estimator)
    found = np.isfinite(arrays["world"]).all(axis=(1, 2))
    assert found.mean() >= 0.95, f"person found in {found.mean():.0%} of {len(found)} depth frames"
    torso = _torso_m(arrays["world"][found])
    assert 0.3 < np.median(torso) < 0.8, f"torso {np.median(torso):.2f} m is not a person's"
    assert ((arrays["world"][found, :, 3] >= 0) & (arrays["world"][found, :, 3] <= 1)).all()


def test_estimator_finds_people_in_real_colour_video(mmg_data):
    clip = mmg_data / "rgb-clips" / "basketball_two_people.mp4"
    frames = _colour_frames(clip, 60)
    with PoseEstimator(PoseSettings()) as estimator:
        world, image = estimator.process_frames(frames)
    found = np.isfinite(world).all(axis=(1, 2))
    assert found.mean() >= 0.9, f"person found in {found.mean():.0%} of 60 colour frames"
    assert np.isfinite(image[found]).all() and not np.isfinite(image[~found]).any()


def test_depth_render_is_stretched_from_the_frame_alone():
    gray = np.zeros((24, 32), np.uint8)
    gray[4:20, 10:20] = np.linspace(40, 140, 16, dtype=np.uint8)[:, None]
    out = stretch_depth_render(gray)
    assert (out[gray == 0] == 0).all()
    fg = out[gray > 0]
    assert fg.min() == DEPTH_POSE_FLOOR and fg.max() == 255
    order = np.argsort(gray[4:20, 12], kind="stable")
    assert (np.diff(out[4:20, 12][order].astype(int)) >= 0).all()  # nearer stays brighter
    assert (stretch_depth_render(np.zeros((5, 5), np.uint8)) == 0).all()


# ---- preprocessing ------------------------------------------------------------------------------

def _walking_pose(n: int = 90, rate: float = 30.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (33, 3))
    base[[LEFT_HIP, RIGHT_HIP]] = [[-0.1, 0.0, 0.0], [0.1, 0.0, 0.0]]
    base[[LEFT_SHOULDER, RIGHT_SHOULDER]] = [[-0.15, -0.5, 0.0], [0.15, -0.5, 0.0]]
    t = np.arange(n) / rate
    frames = np.repeat(base[None], n, axis=0)
    frames[:, 15, 0] += 0.3 * np.sin(2 * np.pi * t)  # the left wrist waves
    vis = np.full((n, 33, 1), 0.9)
    return np.concatenate([frames, vis], axis=2).astype(np.float32), t


def test_pose_features_ignore_where_the_person_stands_and_how_big_they_look():
    spec = PoseSpec()
    landmarks, t = _walking_pose()
    moved = landmarks.copy()
    moved[..., :3] = moved[..., :3] * 2.5 + np.array([1.0, -0.3, 2.0])
    a = preprocess_pose(landmarks, t, spec)
    b = preprocess_pose(moved, t, spec)
    assert a.shape == (len(spec.joints) * 7, spec.num_samples)
    assert np.allclose(a.numpy(), b.numpy(), atol=1e-5)
    features = a.numpy().reshape(len(spec.joints), 7, -1)
    still = [i for i, j in enumerate(spec.joints) if j != 15]
    assert np.abs(features[still, 3:6]).max() < 1e-6  # joints that do not move have no velocity
    assert np.abs(features[spec.joints.index(15), 3]).max() > 0.1


def test_frames_without_a_person_do_not_cover_the_window():
    spec = PoseSpec(min_coverage=0.5)
    landmarks, t = _walking_pose()
    landmarks[:60] = np.nan  # two thirds of the 3 s window: nobody
    with pytest.raises(PreprocessError, match="too short"):
        preprocess_pose(landmarks, t, spec)
    landmarks[30:60] = _walking_pose()[0][30:60]
    assert np.isfinite(preprocess_pose(landmarks, t, spec).numpy()).all()


def test_pose_preprocessing_rejects_the_wrong_shape():
    with pytest.raises(PreprocessError, match=r"\[N,33,4\]"):
        preprocess_pose(np.zeros((10, 17, 3), np.float32), np.arange(10) / 30.0, PoseSpec())


# ---- the live pose stream -----------------------------------------------------------------------

class _FrameSource(SourceBase):
    modality = "video"

    def __init__(self) -> None:
        super().__init__("cam")
        self._health.connected = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def push(self, t: float) -> None:
        self._emit(Chunk("video", np.array([t]), np.zeros((1, 8, 8, 3), np.uint8), "cam"))


class _SlowEstimator:
    """Takes 50 ms a frame and records which frames it saw."""

    def __init__(self, settings: PoseSettings) -> None:
        self.seen: list[float] = []

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.05)
        world = np.zeros((33, 4), np.float32)
        return world, np.zeros((33, 3), np.float32)

    def close(self) -> None:
        pass


def test_pose_stream_takes_the_newest_frame_and_counts_the_skipped():
    camera = _FrameSource()
    stream = PoseStream(camera, rate_hz=100.0, estimator_factory=_SlowEstimator)
    stamps: list[float] = []
    stream.subscribe(lambda c: (stamps.extend(c.timestamps.tolist()), assert_shape(c)))
    stream.start()
    pushed = [100.0 + i / 100 for i in range(100)]
    for t in pushed:  # 100 frames a second, the estimator manages 20
        camera.push(t)
        time.sleep(0.01)
    time.sleep(0.2)
    stream.stop()
    h = stream.health()
    assert 8 <= len(stamps) <= 30, len(stamps)
    assert set(stamps) <= set(pushed) and stamps == sorted(stamps)
    assert stamps[-1] >= pushed[-10]  # the newest frames, not a backlog
    assert h.dropped == len(pushed) - len(stamps)
    stream.stop()  # idempotent


def assert_shape(chunk: Chunk) -> None:
    assert chunk.modality == "pose" and chunk.data.shape == (1, 33, 4) and chunk.data.dtype == np.float32


def test_pose_stream_on_a_real_colour_video_camera(mmg_data):
    from devices.camera import CameraSource

    camera = CameraSource(str(mmg_data / "rgb-clips" / "basketball_two_people.mp4"))
    stream = PoseStream(camera, rate_hz=10.0)
    frames: list[float] = []
    chunks: list[Chunk] = []
    camera.subscribe(lambda c: frames.extend(c.timestamps.tolist()))
    stream.subscribe(chunks.append)
    stream.start()
    camera.start()
    time.sleep(3.0)
    stream.stop()
    camera.stop()
    h = stream.health()
    assert len(chunks) >= 15, f"{len(chunks)} pose estimates in 3 s at 10 Hz"
    assert 7.0 <= h.measured_rate <= 11.0, h.measured_rate
    assert {float(c.timestamps[0]) for c in chunks} <= set(frames)  # stamped with its frame's time
    found = np.mean([np.isfinite(c.data).all() for c in chunks])
    assert found >= 0.8 and h.extra["person_found"] >= 0.8, found
    latest = stream.latest()
    assert latest is not None and latest[1].shape == (33, 3)


# ---- recording and replay -----------------------------------------------------------------------

def test_pose_stream_is_recorded_and_read_back_with_missing_frames(tmp_path):
    landmarks, t = _walking_pose(n=30)
    landmarks[5:8] = np.nan
    writer = SessionWriter(tmp_path / "s", {"cam-pose": {"modality": "pose", "nominal_rate": 30.0}})
    for i in range(30):
        writer.write(Chunk("pose", t[i:i + 1] + 50.0, landmarks[i:i + 1], "cam-pose"))
    writer.close()
    back = SessionReader(tmp_path / "s").read("cam-pose")
    assert back.modality == "pose" and back.data.shape == (30, 33, 4)
    np.testing.assert_array_equal(back.timestamps, t + 50.0)
    np.testing.assert_array_equal(np.isnan(back.data), np.isnan(landmarks))
    np.testing.assert_allclose(back.data[np.isfinite(landmarks)], landmarks[np.isfinite(landmarks)], rtol=1e-6)
    chunks = list(back.chunks())
    assert len(chunks) == 30 and chunks[0].data.shape == (1, 33, 4)


# ---- UTD-MHAD pose through the data set reader ---------------------------------------------------

def test_utd_mhad_pose_is_extracted_once_then_read_from_the_cache(utd_mhad_dir, tmp_path):
    from trainer.data.cache import Cache
    from trainer.data.utd_mhad import UtdMhadDataset
    from trainer.data.utd_pose import TrialPoseReader

    cache = Cache(tmp_path / "cache")
    ds = UtdMhadDataset(utd_mhad_dir, subjects=[2], actions=[3], modalities=("imu", "pose"), cache=cache,
                        pose_reader=TrialPoseReader(cache).stream)
    started = time.perf_counter()
    first = ds[0]
    cold = time.perf_counter() - started
    misses = cache.misses
    started = time.perf_counter()
    again = UtdMhadDataset(utd_mhad_dir, subjects=[2], actions=[3], modalities=("pose", "imu"), cache=cache,
                           pose_reader=TrialPoseReader(cache).stream)[0]
    warm = time.perf_counter() - started
    assert cache.misses == misses and cache.hits >= 2
    assert first.modalities == ("imu", "pose") and first.streams["pose"].data.shape[1:] == (33, 4)
    np.testing.assert_array_equal(first.streams["pose"].data, again.streams["pose"].data)
    assert warm < cold / 5, (cold, warm)
    assert abs(first.streams["pose"].duration - first.streams["imu"].duration) < 0.1


def test_a_clip_without_a_person_keeps_its_other_modalities_in_training_windows():
    from mmg_live.modalities import ModalitySpecs
    from trainer.data.clip import Clip, Stream
    from trainer.windows import build_window_set

    landmarks, t = _walking_pose(n=90)
    imu = np.random.default_rng(0).normal(0, 1, (150, 6)).astype(np.float32)
    seen = Clip("seen", {"pose": Stream(landmarks, t, 30.0), "imu": Stream(imu, np.arange(150) / 50.0, 50.0)},
                0, "a", "1", "1")
    nobody = Clip("nobody", {"pose": Stream(np.full_like(landmarks, np.nan), t, 30.0),
                             "imu": Stream(imu, np.arange(150) / 50.0, 50.0)}, 1, "b", "1", "1")
    windows = build_window_set([seen, nobody], ModalitySpecs(), ["imu", "pose"], [0.0, 0.3])
    assert windows.clip_ids == ["seen", "nobody"]
    assert windows.present["imu"].tolist() == [True, True]
    assert windows.present["pose"].tolist() == [True, False]
    skipped: list = []
    with pytest.raises(Exception, match="no usable clips"):
        build_window_set([nobody], ModalitySpecs(), ["pose"], [0.0], skipped=skipped)
    assert skipped and "too short" in skipped[0][1]


def test_episodes_only_draw_clips_that_have_every_modality_the_pairs_embed():
    import torch

    from trainer.stage_config import StageConfig
    from trainer.stages import episode_labels
    from trainer.windows import WindowSet

    labels = torch.tensor([0, 0, 1, 1, 2])
    data = WindowSet(tensors={"imu": torch.zeros(5, 1, 6, 4), "pose": torch.zeros(5, 1, 105, 4)},
                     present={"imu": torch.ones(5, dtype=torch.bool),
                              "pose": torch.tensor([True, False, True, True, False])},
                     labels=labels, clip_ids=list("abcde"), groups=["1"] * 5)
    stage = StageConfig.from_dict({"name": "meta", "type": "meta", "modalities": ["imu", "pose"],
                                   "pairs": [[["pose"], ["imu"]]]})
    assert episode_labels(data, stage) == [0, -1, 1, 1, -1]
