"""Test helpers (no tests here): a synthetic recorded session (video, audio, IMU) and a small lite checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from devices.base import Chunk
from mmg_live.checkpoint import save_checkpoint
from devices.session import SessionWriter
from mmg_live.models.mmg import build_model

CLASSES = ["walk", "sit", "wave"]


def write_checkpoint(path: Path, trained=("video", "imu")) -> Path:
    """An untrained lite model marked as trained on ``trained`` (encoders, fusion, classifier)."""
    torch.manual_seed(0)
    model = build_model("lite", CLASSES)
    model.trained.encoders = list(trained)
    model.trained.fusion = list(trained)
    model.trained.classifier = True
    return save_checkpoint(path, model)


def imu_signal(t: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(2 * np.pi * 1.3 * t), 0.2 * np.cos(t), np.ones_like(t),
                     30 * np.sin(2 * np.pi * 0.7 * t), np.zeros_like(t), 10 * np.cos(3 * t)], 1).astype(np.float32)


def write_session(folder: Path, seconds: float = 20.0, t0: float = 500.0) -> Path:
    """Gray 30 fps video (48x64) with a moving block, 16 kHz audio in 512-sample blocks, 50 Hz IMU."""
    rng = np.random.default_rng(3)
    nv, na, ni = int(30 * seconds), int(16000 * seconds), int(50 * seconds)
    with SessionWriter(folder, {"audio": {"rate": 16000}, "video": {"fps": 30}}) as w:
        tv = t0 + 0.003 + np.arange(nv) / 30
        for i in range(nv):
            frame = np.zeros((1, 48, 64, 1), np.uint8)
            x = int(8 + 40 * (0.5 + 0.5 * math.sin(i / 15)))
            frame[0, 12:36, x:x + 12] = 200
            w.write(Chunk("video", tv[i:i + 1], frame))
        ta = t0 + np.arange(na) / 16000
        audio = (0.1 * np.sin(2 * np.pi * 440 * ta) + rng.normal(0, 0.01, na)).astype(np.float32)[:, None]
        for i in range(0, na, 512):
            w.write(Chunk("audio", ta[i:i + 512], audio[i:i + 512]))
        ti = t0 + 0.001 + np.arange(ni) / 50
        w.write(Chunk("imu", ti, imu_signal(ti - t0)))
    return folder
