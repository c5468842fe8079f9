"""What a camera delivers (colour or depth), where the app learns it, and the engine's rule: a colour
camera never reaches a depth-trained video encoder (and the pose stream is derived only once)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from devices.base import Chunk
from devices.replay import open_replay
from devices.session import SessionWriter
from mmg_live.live.engine import InferenceEngine
from mmg_live.live.source_buffers import SourceBuffers
from mmg_live.models.mmg import build_model
from mmg_live.models.registry import get_config
from mmg_live.sources import DeviceConfig, make_camera, open_sources

CLASSES = ["walk", "sit", "wave"]


def _session(folder: Path, video_kind: str | None, with_pose: bool = False, seconds: float = 4.0) -> Path:
    rng = np.random.default_rng(0)
    settings = {"fps": 30.0} if video_kind is None else {"fps": 30.0, "video_kind": video_kind}
    with SessionWriter(folder, {"video": settings, "imu": {}}) as writer:
        n = int(seconds * 30)
        t = 10.0 + np.arange(n) / 30.0
        writer.write(Chunk("video", t, rng.integers(0, 255, (n, 48, 64, 1), dtype=np.uint8), "video"))
        ni = int(seconds * 50)
        writer.write(Chunk("imu", 10.0 + np.arange(ni) / 50.0, rng.normal(0, 1, (ni, 6)).astype(np.float32), "imu"))
        if with_pose:
            writer.write(Chunk("pose", t, rng.normal(0, 0.3, (n, 33, 4)).astype(np.float32), "pose"))
    return folder


def test_a_camera_is_colour_unless_told_and_a_replay_says_what_it_recorded(tmp_path, mmg_data):
    clip = str(mmg_data / "rgb-clips" / "basketball_two_people.mp4")
    assert make_camera(clip).health().extra["video_kind"] == "colour"
    assert make_camera(clip, "depth").health().extra["video_kind"] == "depth"
    with pytest.raises(ValueError, match="video_kind"):
        make_camera(clip, "thermal")
    depth = {s.name: s for s in open_replay(_session(tmp_path / "depth", "depth"))}
    assert depth["video"].health().extra["video_kind"] == "depth"
    unknown = {s.name: s for s in open_replay(_session(tmp_path / "unknown", None))}
    assert "video_kind" not in unknown["video"].health().extra


def test_pose_is_derived_from_a_camera_once(tmp_path, mmg_data):
    pytest.importorskip("mediapipe")
    clip = str(mmg_data / "rgb-clips" / "basketball_two_people.mp4")
    result = open_sources(DeviceConfig(camera=clip, pose=True))
    try:
        kinds = sorted(o.source.modality for o in result.started)
        assert kinds == ["pose", "video"], result.messages
    finally:
        for o in result.started:
            o.source.stop()
    without = open_sources(DeviceConfig(camera=clip, pose=False))
    for o in without.started:
        o.source.stop()
    assert [o.source.modality for o in without.started] == ["video"]
    recorded = open_sources(DeviceConfig(replay=str(_session(tmp_path / "s", "depth", with_pose=True)), pose=True))
    for o in recorded.started:
        o.source.stop()
    assert sorted(o.source.modality for o in recorded.started) == ["imu", "pose", "video"]  # not estimated again


@pytest.mark.parametrize("kind, video_used", [("colour", False), ("depth", True), (None, True)])
def test_engine_never_feeds_a_colour_camera_to_a_depth_trained_video_encoder(tmp_path, kind, video_used):
    config = get_config("lite")
    config.specs = replace(config.specs, video=replace(config.specs.video, trained_on="depth"))
    torch.manual_seed(0)
    model = build_model(config, CLASSES)
    model.trained.encoders = model.trained.fusion = ["video", "imu"]
    model.trained.classifier = True
    sources = open_replay(_session(tmp_path / "s", kind, seconds=4.0))  # as a camera of that kind says
    buffers = SourceBuffers.for_model(model)
    streams = buffers.attach(sources)
    engine = InferenceEngine(model, buffers.synchronizer, streams, stride_s=0.1, device="cpu",
                             sources=buffers.sources)
    for s in sources:
        s.start()
    try:
        time.sleep(3.5)
        pred = engine.step()
    finally:
        for s in sources:
            s.stop()
    assert pred is not None
    assert ("video" in pred.modalities) == video_used
    if not video_used:
        assert "colour" in pred.idle["video"] and "depth" in pred.idle["video"]
        assert pred.modalities == ["imu"]
