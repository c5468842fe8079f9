"""The one preprocessing per modality: shapes, values, windows and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmg_live.modalities import (
    AudioSpec, ImuSpec, ModalitySpecs, PreprocessError, VideoSpec, preprocess, preprocess_audio,
    preprocess_imu, preprocess_video, spec_from_dict, spec_to_dict, video_frame_indices,
)


def _frames(n: int, h: int = 48, w: int = 64, c: int = 1) -> np.ndarray:
    """Frame i is filled with the value 10*i so the sampled frame can be identified."""
    return np.stack([np.full((h, w, c), (10 * i) % 256, dtype=np.uint8) for i in range(n)])


def test_video_samples_frames_uniformly_and_normalises():
    spec = VideoSpec(frames=4, size=32, color="gray", window_s=2.0, mean=(0.0,), std=(1.0,))
    ts = np.arange(20) * 0.1 + 0.1  # 10 fps over (0, 2]
    out = preprocess_video(_frames(20), ts, spec, window=(0.0, 2.0))
    assert out.shape == (1, 4, 32, 32)
    # Frame centres at 0.25, 0.75, 1.25, 1.75 s → nearest frames 0.2/0.3 (tie → earlier), 0.7, 1.2, 1.7
    expected = np.array([10 * 1, 10 * 6, 10 * 11, 10 * 16]) / 255.0
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), expected, atol=1e-6)


def test_video_resize_short_side_and_centre_crop():
    spec = VideoSpec(frames=2, size=16, window_s=1.0, mean=(0.0,), std=(1.0,))
    frame = np.zeros((32, 64, 1), dtype=np.uint8)
    frame[:, 16:48] = 255  # bright centre band exactly as wide as the crop after resize
    out = preprocess_video(np.stack([frame, frame]), np.array([0.5, 1.0]), spec, window=(0.0, 1.0))
    assert out.shape == (1, 2, 16, 16)
    # The crop sees only the bright band; antialiasing softens just its outermost columns.
    assert float(out[..., 1:-1].min()) > 0.99
    assert 0.5 < float(out[..., 0].mean()) == pytest.approx(float(out[..., -1].mean()))


def test_video_rgb_to_gray_and_gray_to_rgb():
    rgb = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    gray_spec = VideoSpec(frames=2, size=8, window_s=1.0, mean=(0.0,), std=(1.0,))
    out = preprocess_video(rgb, np.array([0.5, 1.0]), gray_spec, window=(0.0, 1.0))
    np.testing.assert_allclose(out.numpy(), 0.587, atol=1e-5)
    rgb_spec = VideoSpec(frames=2, size=8, color="rgb", window_s=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    out = preprocess_video(_frames(2, 8, 8, 1), np.array([0.5, 1.0]), rgb_spec, window=(0.0, 1.0))
    assert out.shape == (3, 2, 8, 8)


@pytest.mark.parametrize("frames,message", [
    (np.zeros((5, 8, 8, 4), np.uint8), "expected frames"),
    (np.zeros((5, 8, 8, 1), np.float32), "uint8"),
])
def test_video_bad_input_errors(frames, message):
    with pytest.raises(PreprocessError, match=message):
        preprocess_video(frames, np.arange(5) * 0.1, VideoSpec(window_s=0.5))


def test_too_short_input_is_a_clear_error():
    spec = VideoSpec(frames=4, size=8, window_s=3.0, min_coverage=0.5)
    with pytest.raises(PreprocessError, match="too short"):
        preprocess_video(_frames(10, 8, 8), np.arange(10) / 30.0, spec)  # 0.33 s of a 3 s window


def test_audio_fbank_shape_and_pitch():
    spec = AudioSpec(window_s=1.0)
    rate = 8000
    t = np.arange(rate) / rate
    wave = 0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    ts = (np.arange(rate) + 1) / rate
    out = preprocess_audio(wave, ts, spec, window=(0.0, 1.0), sample_rate=rate)
    assert out.shape == (100, 128)
    assert torch.isfinite(out).all()
    # Energy peaks in the mel bin holding 1 kHz (HTK mel scale, 20 Hz..8 kHz, 128 bins).
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    lo, hi = mel(20.0), mel(8000.0)
    centres = lo + (np.arange(128) + 1) * (hi - lo) / 129
    expected_bin = int(np.argmin(np.abs(centres - mel(1000.0))))
    peak = int(out[10:90].mean(0).argmax())
    assert abs(peak - expected_bin) <= 1


def test_audio_any_rate_gives_same_features():
    spec = AudioSpec(window_s=0.5)
    feats = []
    for rate in (16000, 48000):
        t = np.arange(int(0.5 * rate)) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        feats.append(preprocess_audio(wave, (np.arange(len(t)) + 1) / rate, spec, sample_rate=rate))
    assert float((feats[0] - feats[1])[5:-5].abs().mean()) < 0.05


def test_audio_rejects_nan():
    wave = np.zeros(16000, np.float32)
    wave[100] = np.nan
    with pytest.raises(PreprocessError, match="NaN"):
        preprocess_audio(wave, np.arange(16000) / 16000, AudioSpec(), sample_rate=16000)


def test_imu_resamples_converts_units_and_normalises():
    spec = ImuSpec(rate=50.0, window_s=2.0, mean=(0,) * 6, std=(1,) * 6)
    rate = 200.0
    ts = (np.arange(400) + 1) / rate
    data = np.zeros((400, 6), np.float32)
    data[:, 2] = 9.80665  # m/s^2 → 1 g
    data[:, 3] = np.pi  # rad/s → 180 deg/s
    data[:, 0] = ts  # a ramp survives resampling (box filter is linear-phase)
    out = preprocess_imu(data, ts, spec, window=(0.0, 2.0), accel_unit="m/s2", gyro_unit="rad/s")
    assert out.shape == (6, 100)
    np.testing.assert_allclose(out[2].numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[3].numpy(), 180.0, rtol=1e-5)
    grid = (np.arange(100) + 0.5) / 50.0
    np.testing.assert_allclose(out[0, 2:-2].numpy(), grid[2:-2] / 9.80665, atol=1e-4)


@pytest.mark.parametrize("data,message", [
    (np.zeros((100, 3), np.float32), r"expected \[N,6\]"),
    (np.full((100, 6), np.inf, np.float32), "NaN/inf"),
])
def test_imu_bad_input_errors(data, message):
    with pytest.raises(PreprocessError, match=message):
        preprocess_imu(data, np.arange(100) / 50.0, ImuSpec(window_s=2.0))


def test_imu_unknown_unit():
    with pytest.raises(PreprocessError, match="unknown accel unit"):
        preprocess_imu(np.zeros((100, 6), np.float32), np.arange(100) / 50.0, ImuSpec(window_s=2.0),
                       accel_unit="furlongs")


def test_window_is_computed_from_window_samples_only():
    """Samples outside the window never change the output (live sees windows, not trials)."""
    spec = ModalitySpecs(imu=ImuSpec(window_s=1.0))
    rng = np.random.default_rng(0)
    ts = np.arange(300) / 50.0
    data = rng.normal(size=(300, 6)).astype(np.float32)
    window = (2.0, 3.0)
    a = preprocess("imu", data, ts, spec, window)
    changed = data.copy()
    changed[:99] += 100.0  # everything before t=1.98 s: more than one sample before the window
    changed[152:] -= 50.0
    b = preprocess("imu", changed, ts, spec, window)
    torch.testing.assert_close(a, b)


def test_spec_round_trip_and_validation():
    spec = VideoSpec(frames=8, size=32, color="rgb", mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    assert spec_from_dict("video", spec_to_dict(spec)) == spec
    with pytest.raises(ValueError, match="unknown keys"):
        spec_from_dict("imu", {"rate": 50, "bogus": 1})
    with pytest.raises(ValueError, match="mean/std need 3"):
        spec_from_dict("video", {"color": "rgb", "mean": [0.5], "std": [0.2]})
    specs = ModalitySpecs()
    assert ModalitySpecs.from_dict(specs.to_dict()) == specs


def test_foreground_crop_centres_the_subject():
    """Depth with a zeroed background: the crop is the square around the window's foreground."""
    spec = VideoSpec(frames=2, size=16, window_s=1.0, mean=(0.0,), std=(1.0,), crop="foreground")
    frames = np.zeros((2, 120, 160, 1), dtype=np.uint8)
    frames[:, 20:60, 100:120] = 200  # a 40×20 subject off to the right
    out = preprocess_video(frames, np.array([0.5, 1.0]), spec, window=(0.0, 1.0))
    assert out.shape == (1, 2, 16, 16)
    bright = (out[0, 0] > 0.5).numpy()
    rows, cols = np.nonzero(bright.any(1))[0], np.nonzero(bright.any(0))[0]
    assert rows[0] <= 1 and rows[-1] >= 14  # subject spans the crop's height (44 px square)
    assert 3 <= cols[0] and cols[-1] <= 12  # and sits in its middle
    # Nothing but background: falls back to the centre crop instead of failing.
    empty = preprocess_video(np.zeros((2, 120, 160, 1), np.uint8), np.array([0.5, 1.0]), spec, window=(0.0, 1.0))
    assert float(empty.abs().sum()) == 0.0


@pytest.mark.parametrize("crop", ["center", "foreground"])
def test_sampled_frames_preprocess_to_the_same_tensor(crop):
    """The live engine copies only video_frame_indices' frames out of its ring buffer: those
    frames with their timestamps must give the same tensor as the whole window, and sample
    to themselves (regular, jittered, gappy and low-rate cameras)."""
    rng = np.random.default_rng(1)
    spec = VideoSpec(frames=16, size=32, window_s=3.0, crop=crop)
    for n, jitter, gap in ((100, 0.0, False), (90, 0.01, False), (120, 0.004, True), (20, 0.0, False)):
        ts = np.sort(np.arange(n) * (3.4 / n) + rng.uniform(0, jitter, n))
        if gap:
            ts = np.concatenate([ts[:30], ts[70:]])
        frames = rng.integers(0, 255, (len(ts), 60, 80, 1), dtype=np.uint8)
        frames[:, :, :10] = 0
        window = (float(ts[-1]) - 3.0, float(ts[-1]))
        idx = video_frame_indices(ts, spec, window)
        assert len(idx) == 16 and np.all(np.diff(idx) >= 0)
        again = video_frame_indices(ts[idx], spec, window)  # a repeated frame may map to its twin
        np.testing.assert_array_equal(ts[idx][again], ts[idx])
        np.testing.assert_array_equal(frames[idx][again], frames[idx])
        whole = preprocess_video(frames, ts, spec, window)
        torch.testing.assert_close(preprocess_video(frames[idx], ts[idx], spec, window), whole, rtol=0, atol=0)


def test_gravity_frame_leaves_only_a_turn_about_the_gravity_axis():
    """frame="gravity": a window read by a sensor turned any way comes out as the canonical one
    turned about GRAVITY_AXIS only (per sample: the same component along the axis, the same norm)."""
    from mmg_live.modalities import GRAVITY_AXIS, ImuSpec, preprocess_imu
    from trainer.mounting import MOUNTINGS, turned

    rng = np.random.default_rng(0)
    ts = np.arange(150) / 50.0
    x = np.zeros((150, 6))
    x[:, :3] = np.array([-0.9, -0.3, 0.2]) + 0.3 * np.sin(ts[:, None] * np.array([3.0, 5.0, 7.0]))
    x[:, 3:] = 80.0 * rng.standard_normal((150, 3))
    spec = ImuSpec(frame="gravity", std=(1.0,) * 6)
    axis = np.asarray(GRAVITY_AXIS)
    ref = preprocess_imu(x, ts, spec).numpy().astype(np.float64)
    assert np.allclose(np.cross(ref[:3].mean(axis=1), axis), 0.0, atol=1e-5) and ref[:3].mean(axis=1) @ axis > 0
    for name, m in MOUNTINGS.items():
        out = preprocess_imu(turned(x, m), ts, spec).numpy().astype(np.float64)
        for part in (slice(0, 3), slice(3, 6)):
            assert np.allclose(axis @ out[part], axis @ ref[part], atol=1e-3), name
            assert np.allclose(np.linalg.norm(out[part], axis=0), np.linalg.norm(ref[part], axis=0), atol=1e-3), name
    with pytest.raises(ValueError, match="frame"):
        spec_from_dict("imu", {"frame": "world"})
