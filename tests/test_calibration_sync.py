"""Acceptance (b), (c) and drift: time offsets from taps in real-signal recordings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from calibration.errors import CalibrationError
from calibration.events import detect_audio_taps, detect_imu_taps, detect_video_taps
from calibration.sync import StreamData, estimate_offsets, match_events, offset_from_match
from test_calibration_signals import audio_click, tap_recording

HALF_FRAME_S = 0.5 / 30.0


def _streams(rec, video=True):
    out = [StreamData("imu", "imu", rec.imu_t, rec.imu), StreamData("microphone", "audio", rec.audio_t, rec.audio)]
    if video:
        out.append(StreamData("camera", "video", rec.video_t, rec.video))
    return out


@pytest.fixture(scope="module")
def taps(utd_mhad_dir, fsdd_dir):
    return tap_recording(utd_mhad_dir, fsdd_dir)


def test_offsets_are_recovered_within_2_ms_audio_and_half_a_frame_video(taps):
    result = estimate_offsets(_streams(taps))
    imu_ev = result.events["imu"]
    mic, cam = result.offsets["microphone"], result.offsets["camera"]
    imu_err = imu_ev.times - taps.taps
    print(f"IMU onset errors (ms): {np.round(imu_err * 1e3, 2)}")
    print(f"mic offset {mic.offset_s * 1e3:+.2f} ms (true {taps.mic_offset * 1e3:+.1f}), "
          f"spread {mic.spread_s * 1e3:.2f} ms")
    print(f"camera offset {cam.offset_s * 1e3:+.2f} ms (true {taps.camera_offset * 1e3:+.1f}), "
          f"spread {cam.spread_s * 1e3:.2f} ms")
    assert len(imu_ev) == 5 and np.all(np.abs(imu_err) < 0.002)
    assert result.reference == "imu" and result.offsets["imu"].offset_s == 0.0
    assert mic.n_events == 5 and abs(mic.offset_s - taps.mic_offset) < 0.002
    assert cam.n_events == 5 and abs(cam.offset_s - taps.camera_offset) < HALF_FRAME_S
    # the sub-frame interpolation does much better than half a frame on this input
    assert abs(cam.offset_s - taps.camera_offset) < 0.004
    assert mic.drift_ppm is None and cam.drift_ppm is None  # 4.3 s of taps: too short for drift
    assert mic.spread_s < 0.001 and cam.spread_s < 0.005


@pytest.mark.parametrize("trial, speaker, taps_s, cam_off, mic_off", [
    ("a1_s1_t1", "jackson", (0.9, 1.8, 3.1, 3.8, 5.0), 0.180, -0.120),
    ("a9_s2_t4", "nicolas", (1.2, 1.9, 2.7, 3.9, 4.6), -0.060, 0.150),
    ("a13_s3_t2", "lucas", (0.8, 2.1, 2.9, 3.6, 4.9), 0.012, 0.004),  # boxing in the background
])
def test_offsets_on_other_real_backgrounds(utd_mhad_dir, fsdd_dir, trial, speaker, taps_s, cam_off, mic_off):
    rec = tap_recording(utd_mhad_dir, fsdd_dir, taps=taps_s, duration_s=6.2, camera_offset=cam_off,
                        mic_offset=mic_off, trial=trial, speaker=speaker)
    result = estimate_offsets(_streams(rec))
    mic, cam = result.offsets["microphone"], result.offsets["camera"]
    print(f"{trial}/{speaker}: mic error {(mic.offset_s - mic_off) * 1e3:+.2f} ms, "
          f"camera error {(cam.offset_s - cam_off) * 1e3:+.2f} ms")
    assert mic.n_events >= 4 and abs(mic.offset_s - mic_off) < 0.002
    assert cam.n_events >= 4 and abs(cam.offset_s - cam_off) < HALF_FRAME_S


def test_no_taps_gives_a_clear_error_for_every_stream(utd_mhad_dir, fsdd_dir):
    rec = tap_recording(utd_mhad_dir, fsdd_dir, taps=())
    with pytest.raises(CalibrationError, match=r"^no tap events found in imu \(imu, 7\.0 s\)"):
        estimate_offsets(_streams(rec))
    with pytest.raises(CalibrationError, match=r"^no tap events found in microphone \(audio"):
        detect_audio_taps(rec.audio, rec.audio_t, "microphone")
    with pytest.raises(CalibrationError, match=r"^no tap events found in camera \(video"):
        detect_video_taps(rec.video, rec.video_t, "camera")


def test_taps_in_imu_only_are_not_matched_to_speech(utd_mhad_dir, fsdd_dir):
    rec = tap_recording(utd_mhad_dir, fsdd_dir, taps=(), with_video=False)
    tapped = tap_recording(utd_mhad_dir, fsdd_dir, with_video=False)
    streams = [StreamData("imu", "imu", tapped.imu_t, tapped.imu),
               StreamData("microphone", "audio", rec.audio_t, rec.audio)]
    with pytest.raises(CalibrationError, match="no tap events found in microphone"):
        estimate_offsets(streams)


def test_missing_and_extra_detections_do_not_shift_the_offset(taps):
    rng = np.random.default_rng(3)
    # an extra click (a door, a cup) 0.9 s before the first tap and the third tap's sound missing
    audio = taps.audio.astype(np.float64).copy()
    true_t = taps.audio_t - taps.mic_offset
    extra = taps.taps[0] - 0.9
    near = np.abs(true_t - extra - 0.05) < 0.06
    audio[near] += audio_click(true_t[near], extra, rng)
    gone = (true_t >= taps.taps[2] - 0.001) & (true_t < taps.taps[2] + 0.2)
    audio[gone] = 0.02 * rng.standard_normal(int(gone.sum()))
    result = estimate_offsets([StreamData("imu", "imu", taps.imu_t, taps.imu),
                               StreamData("microphone", "audio", taps.audio_t, audio)])
    assert len(result.events["microphone"]) == 5  # 4 taps + the extra click
    mic = result.offsets["microphone"]
    assert mic.n_events == 4
    assert abs(mic.offset_s - taps.mic_offset) < 0.002
    assert list(result.matches["microphone"].ref_index) == [0, 1, 3, 4]


def test_regular_tapping_prefers_the_true_alignment_over_a_one_tap_shift():
    ref = np.arange(5) * 1.0 + 10.0
    other = ref[1:] + 0.031  # first tap missed by this stream
    m = match_events(ref, other, tolerance_s=0.05, max_offset_s=1.5)
    assert len(m.offsets) == 4 and np.allclose(m.offsets, 0.031)
    assert list(m.ref_index) == [1, 2, 3, 4]
    off = offset_from_match(m, other, "audio", stream_start=9.0)
    assert off.offset_s == pytest.approx(0.031) and off.n_events == 4


def test_drift_is_measured_when_taps_span_30_s(utd_mhad_dir, fsdd_dir):
    taps = (1.5, 2.6, 3.5, 34.2, 35.1, 36.3)
    rec = tap_recording(utd_mhad_dir, fsdd_dir, taps=taps, duration_s=38.0, mic_drift_ppm=250.0, with_video=False)
    result = estimate_offsets(_streams(rec, video=False))
    mic = result.offsets["microphone"]
    print(f"drift {mic.drift_ppm:.1f} ppm (true 250), offset at start {mic.offset_s * 1e3:+.2f} ms")
    assert mic.drift_ppm is not None and abs(mic.drift_ppm - 250.0) < 40.0
    assert abs(mic.offset_s - rec.mic_offset) < 0.002
    # offset at the last tap includes the 9 ms the microphone clock gained
    t_last = rec.audio_t[0] + (taps[-1] - 0.137)
    predicted = mic.offset_at(np.array([t_last]), rec.audio_t[0])[0]
    assert abs(predicted - (rec.mic_offset + 250e-6 * (taps[-1] - 0.137))) < 0.002


def test_imu_at_100_hz_lines_up_within_5_ms(taps):
    # the IMU recorded at 100 Hz: the 200 Hz stream through a zero-phase anti-alias filter, halved.
    # (At 50 Hz a sensor's low-pass removes most of a tap's 30 Hz ringing: use >= 100 Hz for sync.)
    ev = detect_imu_taps(resample_poly(taps.imu.astype(np.float64), 1, 2, axis=0), taps.imu_t[::2])
    err = ev.times - taps.taps
    print(f"100 Hz IMU onset errors (ms): {np.round(err * 1e3, 2)}")
    assert len(ev) == 5 and np.all(np.abs(err) < 0.005)


def test_bad_input_is_named():
    with pytest.raises(CalibrationError, match="camera: 3 timestamps for 4 video frames"):
        detect_video_taps(np.zeros(4), np.arange(3.0), "camera")
    with pytest.raises(CalibrationError, match="imu: timestamps go backwards"):
        detect_imu_taps(np.zeros((4, 6)), np.array([0.0, 0.1, 0.05, 0.2]), "imu")
    with pytest.raises(CalibrationError, match="no IMU stream"):
        estimate_offsets([StreamData("mic", "audio", np.arange(10.0), np.zeros(10))])
