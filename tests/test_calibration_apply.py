"""Acceptance (d) and the profile file: applied offsets line the taps up; profiles load/save safely."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.events import detect_audio_taps, detect_imu_taps, detect_video_taps
from calibration.profile import (
    CalibrationProfile,
    ImuCalibration,
    ProfileApplier,
    TimeOffset,
    apply_imu,
    apply_time_offset,
    apply_to_chunk,
    synchronizer_offsets,
)
from calibration.sync import StreamData, estimate_offsets
from devices.base import Chunk, SourceBase
from test_calibration_signals import tap_recording

HALF_FRAME_S = 0.5 / 30.0


@pytest.fixture(scope="module")
def calibrated(utd_mhad_dir, fsdd_dir, tmp_path_factory):
    rec = tap_recording(utd_mhad_dir, fsdd_dir)
    result = estimate_offsets([StreamData("imu", "imu", rec.imu_t, rec.imu),
                               StreamData("microphone", "audio", rec.audio_t, rec.audio),
                               StreamData("camera", "video", rec.video_t, rec.video)])
    path = tmp_path_factory.mktemp("cal") / "profile.json"
    result.to_profile().save(path)
    return rec, CalibrationProfile.load(path), result


def _window_events(rec, t_imu, imu_t, mic_t, cam_t, half=0.3):
    """Detect the tap again inside a ±half window around an IMU tap, per stream, on corrected times."""
    out = {}
    for name, ts, data, fn in (("imu", imu_t, rec.imu, detect_imu_taps),
                               ("microphone", mic_t, rec.audio, detect_audio_taps),
                               ("camera", cam_t, rec.video, detect_video_taps)):
        sel = (ts >= t_imu - half) & (ts < t_imu + half)
        ev = fn(data[sel], ts[sel], name)
        assert len(ev) == 1, (name, ev.times)
        out[name] = ev.times[0]
    return out


def test_corrected_timestamps_line_up_the_taps_in_windows(calibrated):
    rec, prof, result = calibrated
    imu_t = apply_time_offset(prof, "imu", rec.imu_t)
    mic_t = apply_time_offset(prof, "audio", rec.audio_t)  # by modality
    cam_t = apply_time_offset(prof, "camera", rec.video_t)  # by stream name
    assert np.array_equal(imu_t, rec.imu_t)
    worst_mic = worst_cam = 0.0
    for t in result.events["imu"].times:
        ev = _window_events(rec, t, imu_t, mic_t, cam_t)
        worst_mic = max(worst_mic, abs(ev["microphone"] - ev["imu"]))
        worst_cam = max(worst_cam, abs(ev["camera"] - ev["imu"]))
    print(f"after correction: worst audio-IMU {worst_mic * 1e3:.2f} ms, worst video-IMU {worst_cam * 1e3:.2f} ms")
    assert worst_mic < 0.002 and worst_cam < HALF_FRAME_S
    # without the correction the same windows are off by the offsets
    raw = _window_events(rec, result.events["imu"].times[1], rec.imu_t, rec.audio_t, rec.video_t)
    assert abs(raw["microphone"] - raw["imu"] - rec.mic_offset) < 0.002


def test_through_the_synchronizer(calibrated):
    from mmg_live.live.buffer import StreamBuffer, Synchronizer
    from mmg_live.modalities import window_coverage

    rec, prof, result = calibrated
    bufs = [StreamBuffer("imu", 10, 200, (6,), np.float32, name="imu"),
            StreamBuffer("audio", 10, 16000, (1,), np.float32, name="microphone"),
            StreamBuffer("video", 10, 30, rec.video.shape[1:], np.uint8, name="camera")]
    sync = Synchronizer(bufs, offsets=synchronizer_offsets(prof))
    for buf, ts, data in zip(bufs, (rec.imu_t, rec.audio_t, rec.video_t), (rec.imu, rec.audio[:, None], rec.video)):
        for a in range(0, len(ts), max(len(ts) // 40, 1)):  # arrive in chunks, as from a device
            b = min(a + max(len(ts) // 40, 1), len(ts))
            buf.append(Chunk(buf.modality, ts[a:b], data[a:b], buf.name))
    for t in result.events["imu"].times:
        win = {name: buf.window(t - 0.3, t + 0.3) for name, buf in sync.buffers.items()}
        assert all(window_coverage(ts, (t - 0.3, t + 0.3), sync.buffers[n].rate) >= 0.6 for n, (_, ts) in win.items())
        imu_ev = detect_imu_taps(*win["imu"]).times
        mic_ev = detect_audio_taps(*win["microphone"]).times
        cam_ev = detect_video_taps(*win["camera"]).times
        assert len(imu_ev) == len(mic_ev) == len(cam_ev) == 1
        assert abs(mic_ev[0] - imu_ev[0]) < 0.002
        assert abs(cam_ev[0] - imu_ev[0]) < HALF_FRAME_S


class _ArraySource(SourceBase):
    """A real devices.base Source that plays arrays as chunks from its own thread."""

    def __init__(self, name, modality, ts, data, block):
        super().__init__(name)
        self.modality = modality
        self._ts, self._data, self._block = ts, data, block
        self._thread = None

    def start(self):
        def run():
            for a in range(0, len(self._ts), self._block):
                self._emit(Chunk(self.modality, self._ts[a:a + self._block], self._data[a:a + self._block], self.name))
        self._thread = threading.Thread(target=run)
        self._thread.start()

    def stop(self):
        if self._thread:
            self._thread.join(timeout=5)


def test_profile_applier_wraps_a_source_with_drift_and_intrinsics():
    cal = ImuCalibration(accel_offset=[0.1, 0, 0], accel_scale=[2, 1, 1], gyro_bias=[1, 2, 3])
    prof = CalibrationProfile(imu={"imu": cal}, time_offsets={
        "imu": TimeOffset("imu", 0.0), "mic": TimeOffset("audio", -0.02, drift_ppm=1000.0)})
    ts = 50.0 + np.arange(200) / 100.0
    src = _ArraySource("mic", "audio", ts, np.zeros((200, 1), np.float32), 16)
    got = []
    wrapped = ProfileApplier(prof).wrap(src)
    wrapped.subscribe(got.append)
    wrapped.start()
    wrapped.stop()
    out_t = np.concatenate([c.timestamps for c in got])
    # drift counts from the stream's first sample even though the chunks arrive separately
    assert np.allclose(out_t, ts + 0.02 - 1e-3 * (ts - 50.0))
    assert wrapped.name == "mic" and wrapped.health().samples == 200

    imu = Chunk("imu", np.array([1.0, 2.0]), np.array([[2.1, 0, 1, 1, 2, 3], [0.1, 1, 0, 0, 0, 0]], np.float32), "imu")
    fixed = apply_to_chunk(prof, imu)
    assert fixed.data.dtype == np.float32
    assert np.allclose(fixed.data, [[1.0, 0, 1, 0, 0, 0], [0.0, 1, 0, -1, -2, -3]])
    assert np.array_equal(fixed.timestamps, imu.timestamps)


def test_apply_without_entries_changes_nothing():
    prof = CalibrationProfile()
    data = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    assert np.array_equal(apply_imu(prof, data), data)
    ts = np.arange(5.0)
    assert np.array_equal(apply_time_offset(prof, "camera", ts), ts)
    with pytest.raises(CalibrationError, match=r"apply_imu: IMU data must be \[n, 6\]"):
        apply_imu(prof, data[:, :3])


def test_profile_round_trip_and_update_keeps_other_sections(tmp_path):
    cal = ImuCalibration(accel_offset=[0.01, 0.02, 0.03], accel_scale=[1.01, 0.99, 1.0],
                         accel_matrix=np.diag([1.01, 0.99, 1.0]) + 0.001, gyro_bias=[0.5, -0.5, 0.1],
                         gyro_noise_std=[0.1, 0.1, 0.1], still_seconds=7.5)
    prof = CalibrationProfile(imu={"imu": cal}, time_offsets={"camera": TimeOffset("video", 0.047, 0.001, 12.5, 5)})
    path = prof.save(tmp_path / "p.json")
    back = CalibrationProfile.load(path)
    assert np.allclose(back.imu["imu"].accel_matrix, cal.accel_matrix)
    assert back.time_offsets["camera"] == TimeOffset("video", 0.047, 0.001, 12.5, 5)
    assert back.to_dict() == prof.to_dict()
    assert "camera (video): +47.00 ms" in back.summary()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content, message", [
    ("{not json", r"corrupt calibration profile \(invalid JSON at line 1, column 2"),
    ('{"format": "something-else", "version": 1}', "not a calibration profile"),
    ('{"format": "mmg-live-calibration", "version": 99}', "version 99 is newer"),
    ('{"format": "mmg-live-calibration", "version": 1, "imu": {"imu": {"accel_scale": [1, 1]}}}',
     r"imu\['imu'\]\.accel_scale must have shape \(3,\)"),
    ('{"format": "mmg-live-calibration", "version": 1, "imu": {"imu": {"accel_scale": [1, 0, 1]}}}', "zero entry"),
    ('{"format": "mmg-live-calibration", "version": 1, "time_offsets": {"cam": {"modality": "video"}}}',
     r"time_offsets\['cam'\]\.offset_s must be a finite number"),
    ('{"format": "mmg-live-calibration", "version": 1, "time_offsets": {"cam": {"modality": "radar", "offset_s": 0}}}',
     "modality is 'radar'"),
])
def test_bad_profile_files_give_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=message) as info:
        CalibrationProfile.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(CalibrationError, match="calibration profile not found"):
        CalibrationProfile.load(tmp_path / "nope.json")


def test_saved_file_is_versioned_json(tmp_path):
    CalibrationProfile().save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["format"] == "mmg-live-calibration" and doc["version"] == 1
