"""The frozen speech embedding front end (``AudioSpec(frontend="speech_embedding")``) on real FSDD
recordings: one preprocessing from any input rate, padding as the log-mel path, the projection
encoder, spec serialisation, and a check that the embedding carries the spoken digit."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("eff_word_net", reason="efficientword-net is not installed (requirements-nodeps.txt)")
pytest.importorskip("onnxruntime")

from mmg_live import speech_embedding  # noqa: E402
from mmg_live.modalities import (  # noqa: E402
    AudioSpec, ModalitySpecs, PreprocessError, preprocess, spec_from_dict, spec_to_dict,
)
from mmg_live.models.registry import build_encoder, get_config  # noqa: E402
from trainer.augment import augment_audio  # noqa: E402
from trainer.data.fsdd import list_recordings, load_recording  # noqa: E402
from trainer.stage_config import Augmentation  # noqa: E402

SPEC = AudioSpec(window_s=1.5, sample_rate=16000, frontend="speech_embedding", mean=0.0, std=0.5)
SPECS = ModalitySpecs(audio=SPEC)


def _embedding(wave: np.ndarray, rate: float, window: tuple[float, float] | None = None) -> torch.Tensor:
    timestamps = np.arange(len(wave)) / rate
    return preprocess("audio", wave.astype(np.float32), timestamps, SPECS, window, sample_rate=rate)


def _recording(fsdd_dir: Path, speaker: str, digit: int, index: int) -> tuple[np.ndarray, float]:
    [rec] = [r for r in list_recordings(fsdd_dir, [speaker]) if r.digit == digit and r.index == index]
    stream = load_recording(rec).streams["audio"]
    return stream.data[:, 0], stream.rate


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_embedding_is_deterministic_unit_length(fsdd_dir):
    wave, rate = _recording(fsdd_dir, "george", 3, 0)
    assert rate == 8000
    a, b = _embedding(wave, rate), _embedding(wave, rate)
    assert a.shape == (2048,) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.isfinite(a).all() and abs(float(a.norm()) - 1.0) < 1e-3  # mean 0, std 0.5: unscaled


def test_any_input_rate_gives_the_same_embedding(fsdd_dir):
    """An 8 kHz clip, and the same clip resampled to 16 kHz before it is placed in the window
    (preprocessing resamples the placed window instead), give the same embedding.

    The resampler is the one preprocessing uses: the embedding reads up to 8 kHz, and another
    resampler's residue above the 4 kHz band of an 8 kHz recording moves it (cosine 0.987 with
    ``scipy.signal.resample_poly`` on this clip).
    """
    import torchaudio.functional as AF

    wave, rate = _recording(fsdd_dir, "jackson", 7, 1)
    wave16 = AF.resample(torch.from_numpy(wave), 8000, 16000).numpy()
    assert _cosine(_embedding(wave, rate), _embedding(wave16, 16000.0)) >= 0.99


def test_short_window_is_padded_with_silence_before_the_clip(fsdd_dir):
    import torchaudio.functional as AF

    wave, _ = _recording(fsdd_dir, "lucas", 5, 2)
    wave16 = AF.resample(torch.from_numpy(wave), 8000, 16000).numpy()
    assert len(wave16) < speech_embedding.NUM_SAMPLES
    canvas = np.zeros(speech_embedding.NUM_SAMPLES, np.float32)
    canvas[-len(wave16):] = wave16  # the newest 1.5 s: silence, then the whole clip
    expected = torch.from_numpy(speech_embedding.embed_waveform(canvas))
    assert torch.allclose(_embedding(wave16, 16000.0), expected, atol=1e-5)
    # a window the clip covers less than min_coverage is an error, as for the log-mel
    t_end = (len(wave16) - 1) / 16000.0 + 1.45
    with pytest.raises(PreprocessError, match="coverage|cover"):
        _embedding(wave16, 16000.0, (t_end - 1.5, t_end))


def test_spec_round_trip_and_validation():
    assert spec_from_dict("audio", spec_to_dict(SPEC)) == SPEC
    assert spec_to_dict(SPEC)["frontend"] == "speech_embedding"
    assert "frontend" not in spec_to_dict(AudioSpec())  # the default serialises as before
    assert SPEC.output_shape() == (2048,) and SPEC.num_frames == 1
    assert get_config("lite").specs.audio.frontend == "speech_embedding"
    assert get_config("lite_fbank").specs.audio.frontend == "kaldi_fbank"
    with pytest.raises(ValueError, match="frontend must be one of"):
        spec_from_dict("audio", {"frontend": "wav2vec"})
    with pytest.raises(ValueError, match="reads 1.5 s at 16000 Hz"):
        spec_from_dict("audio", {"frontend": "speech_embedding", "window_s": 1.0})
    with pytest.raises(ValueError, match="normalize='global'"):
        spec_from_dict("audio", {"frontend": "speech_embedding", "window_s": 1.5, "normalize": "window"})


@pytest.mark.parametrize("hidden", [512, 0])
def test_projection_encoder_shapes(hidden):
    encoder = build_encoder("speech_projection", SPEC, dim=64, hidden=hidden, dropout=0.1)
    tokens, pooled = encoder(torch.randn(3, 2048))
    assert tokens.shape == (3, 1, 64) and pooled.shape == (3, 64) and encoder.dim == 64
    with pytest.raises(ValueError, match="speech embedding"):
        build_encoder("speech_projection", AudioSpec())
    with pytest.raises(ValueError, match="log-mel"):
        build_encoder("ast", SPEC)


def test_embedding_batches_take_only_explicit_noise():
    x = torch.randn(4, 2048)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment_audio(x, Augmentation(imu_noise=0.1), gen), x)  # derived noise: fbank only
    assert not torch.equal(augment_audio(x, Augmentation(audio_noise=0.1), gen), x)
    with pytest.raises(ValueError, match="log-mel"):
        augment_audio(x, Augmentation(time_masks=2, time_mask_width=10), gen)


def test_nearest_centroid_recognises_digits_of_one_speaker(fsdd_dir):
    """Frozen embedding, no training: 3 recordings per digit make a centroid, 3 others are queries."""
    recs = [r for r in list_recordings(fsdd_dir, ["nicolas"]) if r.index < 6]
    streams = {r: load_recording(r).streams["audio"] for r in recs}
    emb = {r: _embedding(s.data[:, 0], s.rate) for r, s in streams.items()}
    centroids = torch.stack([torch.stack([emb[r] for r in recs if r.digit == d and r.index < 3]).mean(0)
                             for d in range(10)])
    queries = [r for r in recs if r.index >= 3]
    pred = torch.stack([emb[r] for r in queries]) @ torch.nn.functional.normalize(centroids, dim=1).T
    accuracy = float((pred.argmax(1) == torch.tensor([r.digit for r in queries])).float().mean())
    assert accuracy >= 0.6, accuracy  # chance is 0.1


def test_session_is_created_once_across_threads():
    sessions = []
    threads = [threading.Thread(target=lambda: sessions.append(speech_embedding.session())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sessions) == 4 and all(s is sessions[0] for s in sessions)
    with pytest.raises(ValueError, match="149, 64"):
        speech_embedding.embed(np.zeros((2, 100, 64), np.float32))


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "eff_word_net", None)
    with pytest.raises(speech_embedding.SpeechEmbeddingUnavailable, match="pip install"):
        speech_embedding.model_path()


def test_model_cost_from_the_onnx_graph():
    cost = speech_embedding.model_cost()
    assert 20e6 < cost["params"] < 23e6  # 87.6 MB of fp32 initializers
    assert 0.5e9 < cost["macs"] < 1.0e9


def test_digital_silence_gives_a_finite_embedding_and_a_constant_filterbank_is_refused():
    """A muted microphone sends zeros; on a constant filterbank the network returns NaN, which must
    never reach the model: silence is embedded as a fixed -120 dBFS noise floor instead."""
    from mmg_live.speech_embedding import NUM_SAMPLES, embed, embed_waveform, silence_floor

    silent = embed_waveform(np.zeros(NUM_SAMPLES, np.float32))
    assert np.isfinite(silent).all()
    np.testing.assert_array_equal(silent, embed_waveform(silence_floor()))
    quiet = embed_waveform(np.full(NUM_SAMPLES, 5e-8, np.float32))  # below the silence peak: same
    np.testing.assert_array_equal(silent, quiet)
    with pytest.raises(ValueError, match="not finite for 1 of 1 windows"):
        embed(np.full((149, 64), -36.0, np.float32))
