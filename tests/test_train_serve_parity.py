"""The training path and the live path produce identical tensors for the same raw samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devices.base import Chunk
from mmg_live.live.buffer import StreamBuffer, Synchronizer
from mmg_live.live.windowing import read_window, window_tensors
from mmg_live.modalities import preprocess_audio
from mmg_live.models.registry import get_config
from trainer.data.fsdd import list_recordings, load_recording
from trainer.data.utd_mhad import list_trials, load_trial
from trainer.windows import clip_end, clip_tensors

HOST_T0 = 5000.0  # the live clock starts somewhere else entirely


def _feed(buffer: StreamBuffer, modality: str, data: np.ndarray, ts: np.ndarray, pieces: int = 7) -> None:
    for idx in np.array_split(np.arange(len(ts)), pieces):
        if len(idx):
            buffer.append(Chunk(modality, ts[idx] + HOST_T0, data[idx], modality))


def test_utd_trial_video_imu_identical(utd_mhad_dir):
    specs = get_config("lite").specs
    clip = load_trial(list_trials(utd_mhad_dir, subjects=[2], actions=[7])[0])
    video, imu = clip.streams["video"], clip.streams["imu"]
    buffers = {
        "video": StreamBuffer("video", 10.0, video.rate, video.data.shape[1:], np.uint8),
        "imu": StreamBuffer("imu", 10.0, imu.rate, (6,), np.float32),
    }
    _feed(buffers["video"], "video", video.data, video.timestamps)
    _feed(buffers["imu"], "imu", imu.data, imu.timestamps)
    sync = Synchronizer(buffers)
    for offset in (0.0, 0.4):  # at the end of the action and a little before it
        t_end = clip_end(clip) - offset
        trained = clip_tensors(clip, specs, ["video", "imu"], t_end)
        # the engine's own read, accepting what preprocessing accepts (a trial may be shorter than 3 s)
        window = read_window(sync.buffers, {"video": "video", "imu": "imu"}, specs, t_end + HOST_T0)
        live, problems = window.tensors, window.problems
        assert not problems
        for m in ("video", "imu"):
            assert live[m].shape == trained[m].shape
            torch.testing.assert_close(live[m], trained[m], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", ["lite", "lite_fbank"])  # speech embedding, log-mel fbank
def test_fsdd_audio_identical(fsdd_dir, config):
    specs = get_config(config).specs
    clip = load_recording(list_recordings(fsdd_dir, speakers=["jackson"])[3])
    audio = clip.streams["audio"]
    buffer = StreamBuffer("audio", 5.0, audio.rate, (1,), np.float32)
    _feed(buffer, "audio", audio.data, audio.timestamps, pieces=13)
    t_end = clip_end(clip)
    trained = clip_tensors(clip, specs, ["audio"], t_end)["audio"]
    window = read_window({"audio": buffer}, {"audio": "audio"}, specs, t_end + HOST_T0)
    live, problems = window.tensors, window.problems
    assert not problems
    torch.testing.assert_close(live["audio"], trained, atol=1e-4, rtol=1e-4)
    # real speech, not a silent window
    if specs.audio.frontend == "kaldi_fbank":
        assert float(trained.std()) > 0.1
    else:
        n = int(specs.audio.window_s * audio.rate)
        silent = preprocess_audio(np.zeros(n, np.float32), np.arange(n) / audio.rate, specs.audio,
                                  sample_rate=audio.rate)
        assert float((trained - silent).abs().max()) > 0.1


def test_dropout_is_reported_not_raised():
    specs = get_config("lite").specs
    ts = np.arange(5) / 50.0
    live, problems = window_tensors({"imu": (np.zeros((5, 6), np.float32), ts)}, specs, float(ts[-1]))
    assert live == {} and "too short" in problems["imu"]
