"""Time sync on physically modelled taps: each stream's event is the moment of contact.

The sessions come from :mod:`tap_physics`: the device is lifted and struck down onto a table; the
camera sees it move and stop (motion blur, sub-frame exposure), the IMU feels the lift, the
downswing and a sharp impact with a ring-down, the microphone hears a click over a real voice.
Every variant must give the camera offset within half a frame, the microphone offset within 2 ms
and every IMU onset within 2 ms of the true contact. The flash-model recording of
``test_calibration_signals`` is one more case of the same table.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from calibration.cli import main
from calibration.events import detect_imu_taps, detect_video_taps, frame_difference_energy
from calibration.profile import CalibrationProfile
from calibration.sync import StreamData, estimate_offsets
from devices.base import Chunk
from devices.session import SessionWriter
from tap_physics import PhysicalTapSession, make_taps, physical_tap_session, render_imu, render_video
from test_calibration_signals import tap_recording

VARIANTS: dict[str, dict] = {
    # 40×24 px device over a textured table, 200 Hz IMU, 16 kHz microphone, a voice talking
    "base": dict(),
    # a small device struck fast and low; 1 kHz IMU, 48 kHz audio
    "small-fast": dict(size_px=(16, 10), speed=1.5, height_cm=(2.0, 4.0), imu_rate=1000.0, audio_rate=48000,
                       seed=2),
    # a large device (hand and all) brought down slowly; 100 Hz IMU, 8 kHz audio
    "large-slow": dict(size_px=(90, 50), speed=0.7, imu_rate=100.0, audio_rate=8000, seed=3),
    # a person moving behind (real depth video), another voice, one tap out of the camera's view and
    # a cup set down (a click in the audio only); other offsets
    "person-missed-extra": dict(bg="person", speaker="jackson", seed=4, missing={"camera": (3,)}, extra_clicks=(5.5,),
                                camera_offset=0.080, mic_offset=-0.012),
    # a dark device over a plain background, 100 Hz IMU, 48 kHz audio
    "plain-dark": dict(bg="plain", level=30.0, imu_rate=100.0, audio_rate=48000, seed=5, speaker="lucas"),
    # the microphone misses one tap and hears two other clicks; 1 kHz IMU, 8 kHz audio
    "mic-missed-extra": dict(imu_rate=1000.0, audio_rate=8000, seed=6, missing={"microphone": (5,)},
                             extra_clicks=(0.6, 9.4), speaker="nicolas"),
}


@lru_cache(maxsize=None)
def _session(name: str, utd: Path, fsdd: Path) -> PhysicalTapSession:
    return physical_tap_session(utd, fsdd, **VARIANTS[name])


def _streams(s) -> list[StreamData]:
    return [StreamData("imu", "imu", s.imu_t, s.imu), StreamData("microphone", "audio", s.audio_t, s.audio),
            StreamData("camera", "video", s.video_t, s.video)]


def _nearest(times: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true time, the signed error of the nearest event."""
    return np.array([(times - t)[np.argmin(np.abs(times - t))] for t in truth])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_offsets_on_modelled_taps(utd_mhad_dir, fsdd_dir, name):
    s = _session(name, utd_mhad_dir, fsdd_dir)
    fps = 1.0 / float(np.median(np.diff(s.video_t)))
    result = estimate_offsets(_streams(s))
    mic, cam = result.offsets["microphone"], result.offsets["camera"]
    imu_err = _nearest(result.events["imu"].times, s.taps)
    cam_err = _nearest(result.events["camera"].times - s.camera_offset, s.taps)
    mic_err = _nearest(result.events["microphone"].times - s.mic_offset, s.taps)
    print(f"\n{name}: camera offset error {(cam.offset_s - s.camera_offset) * 1e3:+.2f} ms "
          f"({cam.n_events} taps), microphone {(mic.offset_s - s.mic_offset) * 1e3:+.2f} ms ({mic.n_events} taps), "
          f"IMU onsets max |error| {np.abs(imu_err).max() * 1e3:.2f} ms")
    print(f"  per tap (ms): IMU {np.round(imu_err * 1e3, 2)}\n  camera {np.round(cam_err * 1e3, 1)}"
          f"\n  microphone {np.round(mic_err * 1e3, 2)}")
    n = len(s.taps)
    assert len(result.events["imu"]) == n and np.all(np.abs(imu_err) < 0.002)
    assert abs(cam.offset_s - s.camera_offset) < 0.5 / fps
    assert abs(mic.offset_s - s.mic_offset) < 0.002
    assert cam.n_events >= n - len(s.missing.get("camera", ())) - 1
    assert mic.n_events >= n - len(s.missing.get("microphone", ())) - 1
    # a tap the stream never saw, and a click that was no tap, are not paired with an IMU tap
    matched_mic = result.events["microphone"].times[result.matches["microphone"].index] - s.mic_offset
    for extra in s.extra_clicks:
        assert np.all(np.abs(matched_mic - extra) > 0.1)
    for stream, gone in s.missing.items():
        if stream != "imu":
            assert not set(gone) & set(result.matches[stream].ref_index.tolist())


def test_flash_model_is_one_case_of_the_same_table(utd_mhad_dir, fsdd_dir):
    rec = tap_recording(utd_mhad_dir, fsdd_dir)
    result = estimate_offsets([StreamData("imu", "imu", rec.imu_t, rec.imu),
                               StreamData("microphone", "audio", rec.audio_t, rec.audio),
                               StreamData("camera", "video", rec.video_t, rec.video)])
    imu_err = _nearest(result.events["imu"].times, rec.taps)
    cam, mic = result.offsets["camera"], result.offsets["microphone"]
    print(f"\nflash: camera {(cam.offset_s - rec.camera_offset) * 1e3:+.2f} ms, microphone "
          f"{(mic.offset_s - rec.mic_offset) * 1e3:+.2f} ms, IMU max |error| {np.abs(imu_err).max() * 1e3:.2f} ms")
    assert np.all(np.abs(imu_err) < 0.002)
    assert abs(cam.offset_s - rec.camera_offset) < 0.5 / 30 and abs(mic.offset_s - rec.mic_offset) < 0.002


@pytest.mark.parametrize("rate", [
    100.0, 200.0, 1000.0,
    # measured, not yet met: up to 2.9 ms early. The device's 180-450 Hz ring-down sits at this rate's
    # Nyquist frequency, where the (zero-phase) anti-alias filter of the model rings before the impact.
    pytest.param(500.0, marks=pytest.mark.xfail(strict=True,
                                                reason="ring-down at the Nyquist frequency: up to 2.9 ms early")),
])
def test_imu_impact_onsets_at_every_rate(utd_mhad_dir, rate):
    """Lift, downswing and impact: the onset is the impact's, unbiased at any rate."""
    errors = []
    for seed, speed in ((11, 0.8), (12, 1.0), (13, 1.3)):
        rng = np.random.default_rng(seed)
        taps = make_taps(tuple(1000.0 + c for c in (0.9, 2.1, 3.0, 4.4, 5.3)), rng, speed=speed)
        ts, data = render_imu(taps, 1000.0, 6.5, rate, utd_mhad_dir, rng)
        ev = detect_imu_taps(data, ts)
        assert len(ev) == len(taps)
        errors.append(_nearest(ev.times, np.array([t.contact for t in taps])))
    err = np.concatenate(errors)
    print(f"\n{rate:.0f} Hz: IMU onset errors (ms) {np.round(err * 1e3, 2)}")
    assert np.all(np.abs(err) < 0.002)


def test_camera_event_is_where_the_motion_stops_not_where_it_starts(utd_mhad_dir, fsdd_dir):
    s = _session("base", utd_mhad_dir, fsdd_dir)
    ev = detect_video_taps(frame_difference_energy(s.video), s.video_t)
    lift_starts = np.array([m.start for m in s.motions])
    err = _nearest(ev.times - s.camera_offset, s.taps)
    assert len(ev) == len(s.taps) and np.all(np.abs(err) < 0.5 / 30)
    assert np.all(np.abs(_nearest(ev.times - s.camera_offset, lift_starts)) > 0.1)


@pytest.mark.parametrize("exposure", [0.5, 0.25])
def test_short_exposure_is_modelled_when_given(utd_mhad_dir, exposure):
    """A camera exposing for part of the frame period: told the exposure, the detector places the
    contact as well as with a full-period exposure; not told, it reads early by up to about half the
    dead time between exposures (still within half a frame here)."""
    rng = np.random.default_rng(31)
    taps = make_taps(tuple(1000.0 + c for c in (1.3, 2.45, 3.4, 4.9, 6.05, 7.0, 8.65, 10.2)), rng)
    ts, frames = render_video(taps, 1000.0, 12.0, 30.0, 0.0, rng, exposure=exposure, utd_dir=utd_mhad_dir)
    energy = frame_difference_energy(frames)
    contacts = np.array([t.contact for t in taps])
    told = _nearest(detect_video_taps(energy, ts, exposure_s=exposure / 30.0).times, contacts)
    untold = _nearest(detect_video_taps(energy, ts).times, contacts)
    print(f"\nexposure {exposure:g} frame: median error told {np.median(told) * 1e3:+.2f} ms "
          f"(per tap {np.round(told * 1e3, 1)}), not told {np.median(untold) * 1e3:+.2f} ms")
    assert abs(np.median(told)) < 0.004 and np.all(np.abs(told) < 0.5 / 30)
    assert abs(np.median(untold)) < 0.5 / 30


def test_cli_sync_on_a_recorded_modelled_session(utd_mhad_dir, fsdd_dir, tmp_path, capsys):
    """Through the session writer and ``mmg-calibrate sync``, as a user would run it."""
    s = _session("base", utd_mhad_dir, fsdd_dir)
    folder = tmp_path / "taps"
    streams = [("imu", "imu", s.imu_t, s.imu, 10), ("microphone", "audio", s.audio_t, s.audio[:, None], 512),
               ("camera", "video", s.video_t, s.video[..., None], 1)]
    with SessionWriter(folder, devices={"microphone": {"rate": 16000}, "camera": {"fps": 30}}) as writer:
        for name, modality, ts, data, block in streams:
            for a in range(0, len(ts), block):
                writer.write(Chunk(modality, ts[a:a + block], data[a:a + block], name))
    out = tmp_path / "profile.json"
    assert main(["sync", "--session", str(folder), "--out", str(out)]) == 0
    print(capsys.readouterr().out)
    prof = CalibrationProfile.load(out)
    assert abs(prof.time_offsets["microphone"].offset_s - s.mic_offset) < 0.002
    assert abs(prof.time_offsets["camera"].offset_s - s.camera_offset) < 0.5 / 30
    # the camera's exposure can be given (here the model's: the whole frame period)
    assert main(["sync", "--session", str(folder), "--out", str(out), "--force", "--exposure-ms", "33.3"]) == 0
    assert abs(CalibrationProfile.load(out).time_offsets["camera"].offset_s - s.camera_offset) < 0.5 / 30
    assert main(["sync", "--session", str(folder), "--out", str(out), "--force", "--exposure-ms", "0"]) == 2
    assert "--exposure-ms 0: must be > 0" in capsys.readouterr().err
