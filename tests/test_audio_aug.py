"""Audio front-end options (per-window CMVN) and the audio training augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmg_live.modalities import (
    AudioSpec, ModalitySpecs, preprocess_audio, spec_from_dict, spec_to_dict, window_normalize,
)
from trainer.augment import augment_audio, augment_inputs
from trainer.stage_config import Augmentation, StageConfig

RATE = 8000


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A short two-tone burst with an envelope, surrounded by near silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    env = np.exp(-((t - seconds / 2) / (seconds / 6)) ** 2)
    wave = env * (0.4 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 1700 * t))
    return (wave + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def _reference_global(wave: np.ndarray, spec: AudioSpec) -> torch.Tensor:
    """The pre-existing audio path written out: right-aligned on silence, 16 kHz, fbank, affine."""
    import torchaudio.functional as AF
    from torchaudio.compliance import kaldi

    canvas = np.zeros(int(spec.window_s * RATE), dtype=np.float32)
    canvas[len(canvas) - len(wave):] = wave
    x = AF.resample(torch.from_numpy(canvas), RATE, spec.sample_rate)
    fb = kaldi.fbank(x.unsqueeze(0), sample_frequency=spec.sample_rate, num_mel_bins=spec.n_mels,
                     frame_shift=spec.frame_shift_ms, frame_length=spec.frame_length_ms, htk_compat=True,
                     window_type="hanning", use_energy=False, dither=0.0)
    fb = F.pad(fb, (0, 0, 0, spec.num_frames - fb.shape[0]), value=float(fb.min()))[:spec.num_frames]
    return (fb - spec.mean) / (2.0 * spec.std)


def _pre(wave: np.ndarray, spec: AudioSpec) -> torch.Tensor:
    ts = (np.arange(len(wave)) + 1) / RATE  # last sample at t = len/RATE
    t1 = float(ts[-1])
    return preprocess_audio(wave, ts, spec, window=(t1 - spec.window_s, t1), sample_rate=RATE)


# ------------------------------------------------------------------------------------ spec / front end

def test_default_spec_is_unchanged():
    spec = AudioSpec()
    assert spec.normalize == "global"
    d = spec_to_dict(spec)
    assert set(d) == {"sample_rate", "n_mels", "frame_shift_ms", "frame_length_ms", "window_s",
                      "mean", "std", "min_coverage"}  # serialised (and cache-hashed) as before
    assert spec_from_dict("audio", d) == spec
    wave = _speech_like(0.4)
    torch.testing.assert_close(_pre(wave, spec), _reference_global(wave, spec), rtol=0, atol=1e-5)


def test_old_checkpoint_spec_dict_loads_as_global():
    legacy = {"sample_rate": 16000, "n_mels": 128, "frame_shift_ms": 10.0, "frame_length_ms": 25.0,
              "window_s": 1.0, "mean": -4.27, "std": 4.57, "min_coverage": 0.1}
    spec = spec_from_dict("audio", legacy)
    assert spec.normalize == "global"
    wave = _speech_like(0.5, seed=3)
    assert torch.equal(_pre(wave, spec), _pre(wave, AudioSpec()))


def test_window_spec_round_trips():
    specs = ModalitySpecs(audio=AudioSpec(normalize="window", mean=0.1, std=0.9))
    d = specs.to_dict()
    assert d["audio"]["normalize"] == "window"
    assert ModalitySpecs.from_dict(d).audio == specs.audio


def test_band_limit_keeps_energy_above_it_out_of_every_bin():
    """A 3 kHz tone stands out of a full-band filterbank and not out of one that ends at 2.5 kHz."""
    t = np.arange(int(0.6 * RATE)) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    full = AudioSpec(mean=0.0, std=0.5)
    band = AudioSpec(mean=0.0, std=0.5, high_freq_hz=2500.0)
    top_full = _pre(tone, full)[-20:]  # the last 20 frames: all inside the tone
    top_band = _pre(tone, band)[-20:]
    # full band: the bins around 3 kHz stand far above the rest; band-limited: nothing stands out
    assert float(top_full.max() - top_full.median()) > 5.0
    assert float(top_band.max() - top_band.median()) < 0.5 * float(top_full.max() - top_full.median())
    assert spec_to_dict(full) == spec_to_dict(AudioSpec(mean=0.0, std=0.5))  # opt-in: hashed as before
    assert spec_to_dict(band)["high_freq_hz"] == 2500.0
    assert spec_from_dict("audio", spec_to_dict(band)) == band


@pytest.mark.parametrize("bad", [-100.0, 10.0, 9000.0])
def test_band_limit_out_of_range_is_an_error(bad):
    with pytest.raises(ValueError, match="high_freq_hz"):
        spec_from_dict("audio", {"high_freq_hz": bad})


def test_unknown_normalize_is_an_error():
    with pytest.raises(ValueError, match="normalize"):
        spec_from_dict("audio", {"normalize": "utterance"})


def test_window_normalisation_equals_the_formula():
    wave = _speech_like(0.45, seed=1)
    raw = _pre(wave, AudioSpec(mean=0.0, std=0.5))  # (x - 0) / (2 * 0.5): the plain log-mel
    out = _pre(wave, AudioSpec(mean=0.0, std=0.5, normalize="window"))
    mu = raw.mean(0, keepdim=True)
    sd = torch.sqrt(((raw - mu) ** 2).mean(0, keepdim=True))
    varying = sd.squeeze(0) > 0.1  # (near-)empty mel bins: float noise over a tiny std, not compared
    torch.testing.assert_close(out[:, varying], ((raw - mu) / (sd + 1e-5))[:, varying], rtol=0, atol=1e-4)
    torch.testing.assert_close(window_normalize(raw)[:, varying], out[:, varying], rtol=0, atol=1e-4)
    assert varying.sum() > 50
    torch.testing.assert_close(out.mean(0)[varying], torch.zeros(int(varying.sum())), rtol=0, atol=1e-4)
    torch.testing.assert_close(out.std(0, unbiased=False)[varying], torch.ones(int(varying.sum())),
                               rtol=0, atol=1e-3)
    # then the spec's fixed affine
    out2 = _pre(wave, AudioSpec(mean=0.3, std=2.0, normalize="window"))
    torch.testing.assert_close(out2, (out - 0.3) / 4.0, rtol=0, atol=1e-4)


def test_window_normalisation_uses_the_window_only():
    """A window of a long stream equals the same samples given alone, and is level invariant."""
    spec = AudioSpec(normalize="window", mean=0.0, std=0.5)
    before = _speech_like(1.5, seed=7)
    word = _speech_like(0.6, seed=8)
    stream = np.concatenate([before * 5.0, word])  # a loud word just before the window
    ts = (np.arange(len(stream)) + 1) / RATE
    t1 = float(ts[-1])
    in_stream = preprocess_audio(stream, ts, spec, window=(t1 - 1.0, t1), sample_rate=RATE)
    alone_part = stream[-RATE:]
    alone = preprocess_audio(alone_part, ts[-RATE:], spec, window=(t1 - 1.0, t1), sample_rate=RATE)
    torch.testing.assert_close(in_stream, alone, rtol=0, atol=1e-5)
    # a gain of the window's samples is an additive constant in log-mel: removed per bin (in the
    # bins with content; bins above the 4 kHz Nyquist of 8 kHz input sit at the fbank's floor)
    louder = preprocess_audio(alone_part * 4.0, ts[-RATE:], spec, window=(t1 - 1.0, t1), sample_rate=RATE)
    # and the last 2 frames, padding at the fbank's minimum, do not move with the gain either,
    # which shifts the per-bin statistics a little
    speech_bins = slice(10, 90)  # ~150 Hz .. 3 kHz
    diff = (louder - alone)[:98, speech_bins].abs()
    assert float(diff.mean()) < 0.1 and float(diff.quantile(0.95)) < 0.2  # vs. 1 std per bin
    raw = AudioSpec(mean=0.0, std=0.5)  # without it, the same gain moves every value by log(16)
    moved = (preprocess_audio(alone_part * 4.0, ts[-RATE:], raw, window=(t1 - 1.0, t1), sample_rate=RATE)
             - preprocess_audio(alone_part, ts[-RATE:], raw, window=(t1 - 1.0, t1), sample_rate=RATE))
    assert abs(float(moved[:98, speech_bins].median()) - np.log(16.0)) < 0.05


# ------------------------------------------------------------------------------------ augmentation

def _stage(**kw) -> StageConfig:
    return StageConfig.from_dict({"name": "t", "modalities": ["audio"], **kw})


def _options(**kw) -> Augmentation:
    """The augmentation options of an audio stage with the recipe keys ``kw``."""
    return _stage(**kw).augment


def test_default_audio_augmentation_is_the_old_noise():
    x = torch.randn(4, 100, 128)
    for kw in ({}, {"imu_noise": 0.1}, {"imu_noise": 0.0}):
        stage = _stage(**kw)
        got = augment_inputs({"audio": x}, stage.augment, torch.Generator().manual_seed(5))["audio"]
        gen = torch.Generator().manual_seed(5)
        noise = stage.augment.imu_noise
        want = x + 0.5 * noise * torch.randn(x.shape, generator=gen) if noise > 0 else x
        assert torch.equal(got, want)


def test_audio_noise_overrides_imu_noise():
    x = torch.zeros(2, 100, 128)
    out = augment_audio(x, _options(imu_noise=0.1, audio_noise=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(out, x)
    out = augment_audio(x, _options(imu_noise=0.0, audio_noise=0.3), torch.Generator().manual_seed(0))
    assert abs(float(out.std()) - 0.3) < 0.01


def test_frequency_masks_zero_contiguous_mel_bands():
    torch.manual_seed(0)
    x = torch.rand(64, 100, 128) + 1.0  # never zero
    out = augment_audio(x, _options(audio_noise=0.0, freq_masks=1, freq_mask_width=20),
                        torch.Generator().manual_seed(1))
    widths = []
    for b in range(x.shape[0]):
        zero = out[b] == 0
        cols = zero.all(0)  # mel bins zeroed in every frame
        assert torch.equal(zero, cols.unsqueeze(0).expand_as(zero))  # whole bands, nothing else
        idx = cols.nonzero().flatten()
        if len(idx):
            assert int(idx[-1] - idx[0]) + 1 == len(idx)  # one contiguous band
        widths.append(len(idx))
        assert torch.equal(out[b][~zero], x[b][~zero])  # the rest untouched
    assert max(widths) <= 20 and max(widths) >= 15 and min(widths) <= 5


def test_time_masks_zero_contiguous_frames():
    x = torch.rand(64, 100, 128) + 1.0
    out = augment_audio(x, _options(audio_noise=0.0, time_masks=1, time_mask_width=10),
                        torch.Generator().manual_seed(2))
    for b in range(x.shape[0]):
        zero = out[b] == 0
        rows = zero.all(1)
        assert torch.equal(zero, rows.unsqueeze(1).expand_as(zero))
        idx = rows.nonzero().flatten()
        assert len(idx) <= 10
        if len(idx):
            assert int(idx[-1] - idx[0]) + 1 == len(idx)
        assert torch.equal(out[b][~zero], x[b][~zero])


def test_two_masks_of_each_kind_cover_at_most_their_widths():
    x = torch.rand(32, 100, 128) + 1.0
    out = augment_audio(x, _options(audio_noise=0.0, freq_masks=2, freq_mask_width=8, time_masks=2,
                                  time_mask_width=5), torch.Generator().manual_seed(3))
    zero = out == 0
    cols = zero.all(1).sum(1)  # [B] zeroed mel bins
    rows = zero.all(2).sum(1)  # [B] zeroed frames
    assert int(cols.max()) <= 16 and int(rows.max()) <= 10
    # every zero lies in a zeroed band or a zeroed frame
    assert torch.equal(zero, zero.all(1, keepdim=True) | zero.all(2, keepdim=True))


def test_gain_is_one_constant_per_clip():
    x = torch.randn(16, 100, 128)
    out = augment_audio(x, _options(audio_noise=0.0, audio_gain=0.4), torch.Generator().manual_seed(4))
    diff = out - x
    per_clip = diff[:, :1, :1]
    torch.testing.assert_close(diff, per_clip.expand_as(diff), rtol=0, atol=1e-6)
    assert float(per_clip.abs().max()) <= 0.4 and float(per_clip.std()) > 0.05


def test_time_shift_moves_frames_and_fills_with_the_clip_minimum():
    frames = torch.arange(100, dtype=torch.float32).view(1, 100, 1).expand(8, 100, 4) + 1.0
    out = augment_audio(frames.clone(), _options(audio_noise=0.0, audio_shift=30), torch.Generator().manual_seed(6))
    seen = set()
    for b in range(8):
        col = out[b, :, 0]
        inside = col != 1.0  # 1.0 is the minimum of the clip: the fill value (and frame 0's value)
        shift = int(round(float((torch.arange(100, dtype=torch.float32) + 1.0 - col)[inside][0])))
        seen.add(shift)
        assert abs(shift) <= 30
        expected = (torch.arange(100) - shift).clamp(0, 99).float() + 1.0
        expected[(torch.arange(100) - shift < 0) | (torch.arange(100) - shift > 99)] = 1.0
        assert torch.equal(col, expected)
        assert torch.equal(out[b], col.unsqueeze(1).expand(100, 4))
    assert len(seen) > 2


def test_mel_warp_stretches_the_frequency_axis():
    ramp = torch.arange(128, dtype=torch.float32).view(1, 1, 128).expand(16, 10, 128).clone()
    out = augment_audio(ramp, _options(audio_noise=0.0, audio_freq_warp=0.1), torch.Generator().manual_seed(8))
    k = torch.arange(128, dtype=torch.float32)
    factors = []
    for b in range(16):
        factor = float(k[64] / out[b, 0, 64])
        assert 0.9 - 1e-4 <= factor <= 1.1 + 1e-4
        want = (k / factor).clamp(max=127)
        torch.testing.assert_close(out[b], want.expand(10, 128), rtol=0, atol=1e-3)
        factors.append(factor)
    assert max(factors) - min(factors) > 0.05


def test_tempo_stretch_is_anchored_at_the_window_end():
    """On a ramp (frame t holds t + 1) the output's slope is the tempo factor; the newest frame stays."""
    ramp = (torch.arange(100, dtype=torch.float32) + 1.0).view(1, 100, 1).expand(16, 100, 3).clone()
    out = augment_audio(ramp, _options(audio_noise=0.0, audio_time_stretch=0.4), torch.Generator().manual_seed(4))
    t = torch.arange(100, dtype=torch.float32)
    rates = []
    for b in range(16):
        col = out[b, :, 0]
        assert float(col[-1]) == pytest.approx(100.0)
        rate = float(col[-1] - col[-2])
        assert 1 / 1.4 - 1e-4 <= rate <= 1.4 + 1e-4
        source = 99.0 - (99.0 - t) * rate
        want = torch.where(source >= 0, source + 1.0, torch.tensor(1.0))  # before the start: the floor
        torch.testing.assert_close(col, want, rtol=0, atol=1e-3)
        assert torch.equal(out[b], col.unsqueeze(1).expand(100, 3))
        rates.append(rate)
    assert min(rates) < 0.95 and max(rates) > 1.05  # both faster and slower speakers


def test_other_recipes_draw_the_same_random_numbers():
    """Turning on nothing audio-specific leaves video/imu augmentation draws untouched."""
    inputs = {"imu": torch.randn(4, 6, 150), "audio": torch.randn(4, 100, 128)}
    a = augment_inputs(inputs, StageConfig(name="s", modalities=["imu", "audio"]).augment,
                       torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    x = inputs["imu"]
    scale = 1.0 + 0.1 * (torch.rand(4, 1, 1, generator=gen) - 0.5)
    imu = x * scale + 0.05 * torch.randn(x.shape, generator=gen)
    audio = inputs["audio"] + 0.025 * torch.randn(inputs["audio"].shape, generator=gen)
    assert torch.equal(a["imu"], imu) and torch.equal(a["audio"], audio)


def test_floorpad_fills_padding_frames_with_the_window_floor():
    wave = _speech_like(0.4, seed=2)  # 0.4 s right-aligned in a 1 s window: 0.6 s of padding
    raw = _pre(wave, AudioSpec(mean=0.0, std=0.5))
    out = _pre(wave, AudioSpec(mean=0.0, std=0.5, normalize="window_floorpad"))
    # 16 kHz: the input covers samples [9600, 16000); frame i reads [160 i, 160 i + 400); 98 frames
    i = torch.arange(100)
    covered = (160 * i >= 9600) & (160 * i + 400 <= 16000) & (i < 98)
    assert int(covered.sum()) == 38
    floor = raw[covered].amin(0)
    filled = torch.where(covered.unsqueeze(1), raw, floor.unsqueeze(0))
    want = window_normalize(filled)
    varying = filled.std(0) > 0.1
    torch.testing.assert_close(out[:, varying], want[:, varying], rtol=0, atol=1e-4)
    assert torch.equal(out[~covered], out[~covered][:1].expand(int((~covered).sum()), -1))


def test_floorpad_on_a_covered_window_fills_only_the_final_frames():
    """A live window full of real samples: only the frames past the last full frame are filled."""
    spec_a = AudioSpec(mean=0.0, std=0.5, normalize="window_floorpad", window_s=0.99)
    spec_b = AudioSpec(mean=0.0, std=0.5, normalize="window", window_s=0.99)
    wave = _speech_like(1.5, seed=4)
    # 0.99 s → 97 frames computed of 99 wanted: the last 2 are padding in both modes
    a, b = _pre(wave, spec_a), _pre(wave, spec_b)
    assert a.shape == b.shape == (99, 128)
    raw = _pre(wave, AudioSpec(mean=0.0, std=0.5, window_s=0.99))
    filled = raw.clone()
    filled[97:] = raw[:97].amin(0)
    varying = filled.std(0) > 0.1
    torch.testing.assert_close(a[:, varying], window_normalize(filled)[:, varying], rtol=0, atol=1e-4)
