"""A colour webcam end to end: `mmg-live --headless` on emulated hardware (a real colour video file
as the camera, a socat pty serial IMU, a PulseAudio null-sink microphone) to JSON predictions
that read pose derived from the camera and never feed its colour frames to the depth-trained
video encoder.

The model is a lite model whose header says its video, IMU and pose encoders (and the fusion and
classifier) are trained and that its video encoder learned depth, as the default model's does:
what is tested is the live path (which streams open, which modalities are encoded and why video
is left out), which the weights do not change."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from emulation_devices import LineWriter, pulse_server, socat_pair  # noqa: F401  (fixtures)
from mmg_live.checkpoint import save_checkpoint
from mmg_live.cli import main
from mmg_live.models.mmg import build_model
from mmg_live.models.registry import get_config
from mmg_live.no_action import NO_ACTION

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def depth_video_pose_imu_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dataclasses import replace

    import torch

    from trainer.data.utd_mhad import ACTIONS

    config = get_config("lite")
    config.specs = replace(config.specs, video=replace(config.specs.video, trained_on="depth"))
    torch.manual_seed(0)
    model = build_model(config, [*ACTIONS, NO_ACTION])
    model.trained.encoders = ["video", "imu", "pose"]
    model.trained.fusion = ["video", "imu", "pose"]
    model.trained.classifier = True
    return save_checkpoint(tmp_path_factory.mktemp("model") / "depth_video_pose_imu.safetensors", model)


def _still_wrist(seq: int) -> tuple[bytes, bool]:
    """A resting wrist sensor at 50 Hz: gravity on z and a little noise."""
    rng = np.random.default_rng(seq)
    a = np.array([0.02, -0.01, 1.0]) + rng.normal(0, 0.01, 3)
    g = rng.normal(0, 0.5, 3)
    return (",".join(f"{v:.4f}" for v in (*a, *g)) + "\n").encode(), False


@pytest.mark.parametrize("clip", ["basketball_two_people.mp4", "arm_wrestling_closeup.mp4"])
def test_colour_video_camera_serial_imu_and_microphone_to_predictions(
    clip: str, mmg_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, pulse_server, socat_pair, fsdd_dir,  # noqa: F811
    depth_video_pose_imu_checkpoint: Path,
) -> None:
    video = mmg_data / "rgb-clips" / clip
    jsonl = tmp_path / "predictions.jsonl"
    imu = LineWriter(socat_pair.device, 50.0, _still_wrist, duration=12.0)
    imu.start()
    speech = threading.Timer(1.0, pulse_server.play, args=(fsdd_dir / "recordings" / "3_nicolas_0.wav",))
    speech.start()
    try:
        rc = main(["--headless", "--camera", str(video), "--imu", f"{socat_pair.port}@115200", "--mic",
                   "--checkpoint", str(depth_video_pose_imu_checkpoint), "--jsonl", str(jsonl), "--seconds", "8"])
    finally:
        speech.join(10)
        imu.stop_event.set()
        imu.join(5)
    _, err = capsys.readouterr()
    assert rc == 0, err
    predictions = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(predictions) >= 10, (len(predictions), err)
    assert all("video" not in p["modalities"] for p in predictions)
    with_pose = [p for p in predictions if "pose" in p["modalities"]]
    p95 = float(np.percentile([p["latency_ms"]["total"] for p in predictions], 95))
    print(f"{clip}: {len(predictions)} predictions in 8 s, {len(with_pose)} with pose, "
          f"modalities {sorted({'+'.join(p['modalities']) for p in predictions})}, processing p95 {p95:.0f} ms")
    assert len(with_pose) >= 0.5 * len(predictions), (len(with_pose), len(predictions))
    assert all("imu" in p["modalities"] for p in predictions[-5:])
    idle_video = [p["idle"].get("video", "") for p in predictions]
    assert all("colour" in why and "depth" in why for why in idle_video), idle_video[:3]
    assert all(p["latency_ms"]["total"] < 1000 for p in predictions)
