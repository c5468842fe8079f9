"""Test inputs for the calibration tests, built from REAL recordings (UTD-MHAD IMU/depth, FSDD audio).

Imported by the other ``test_calibration_*`` files; its own tests check that the builders inject
what they claim. Nothing here is copied into the repository: the recordings are read in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import soundfile
from scipy.signal import resample_poly
from scipy.spatial.transform import Rotation

IMU_RATE_UTD = 50.0


# ---- IMU: real still noise and six poses --------------------------------------------------------
def load_inertial(utd_dir: Path, name: str) -> np.ndarray:
    """``d_iner`` (T×6: accel g, gyro deg/s, 50 Hz) of ``Inertial/<name>_inertial.mat``."""
    return scipy.io.loadmat(utd_dir / "Inertial" / f"{name}_inertial.mat")["d_iner"].astype(np.float64)


def real_still_windows(utd_dir: Path, count: int = 20, window: int = 25) -> list[np.ndarray]:
    """The ``count`` quietest real ``window``-sample stretches of UTD-MHAD IMU data (one per file).

    Searched in actions 24–27 (sit/stand, lunge, squat: the thigh sensor rests at the start or end).
    Each is returned raw (gravity included): ``[window, 6]``.
    """
    return quietest_windows(sorted((utd_dir / "Inertial").glob("a2[4-7]_s*_t*_inertial.mat")), count, window)


def quietest_windows(paths: list[Path], count: int, window: int) -> list[np.ndarray]:
    """The ``count`` stillest ``window``-sample stretches of UTD-MHAD inertial files ``paths`` (one per
    file, least gyro spread first), raw ``[window, 6]``."""
    found = []
    for path in paths:
        d = scipy.io.loadmat(path)["d_iner"].astype(np.float64)
        w = np.lib.stride_tricks.sliding_window_view(d, window, axis=0)  # [n-w+1, 6, w]
        score = w[:, 3:, :].std(axis=-1).max(axis=1)
        i = int(np.argmin(score))
        found.append((float(score[i]), d[i:i + window]))
    found.sort(key=lambda x: x[0])
    return [seg for _, seg in found[:count]]


def rotation_to(vector: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A rotation matrix turning the direction of ``vector`` onto ``target``."""
    rot, _ = Rotation.align_vectors(np.atleast_2d(target), np.atleast_2d(vector))
    return rot.as_matrix()


AXIS = {"+x": (0, 1.0), "-x": (0, -1.0), "+y": (1, 1.0), "-y": (1, -1.0), "+z": (2, 1.0), "-z": (2, -1.0)}


def real_noise_in_pose(windows: list[np.ndarray], pose: str, n: int, start: int) -> np.ndarray:
    """``n`` samples of a perfectly calibrated sensor at rest in ``pose``: exactly ±1 g on the pose
    axis, zero rotation rate, plus the real residual noise of the still windows (each window minus its
    own mean, rotated by the rotation that turns the window's real gravity vector onto the pose axis).
    """
    axis, sign = AXIS[pose]
    target = np.zeros(3)
    target[axis] = sign
    out = []
    k = start
    while sum(len(o) for o in out) < n:
        w = windows[k % len(windows)]
        k += 1
        rot = rotation_to(w[:, :3].mean(axis=0), target)
        resid = w - w.mean(axis=0)
        seg = np.empty_like(w)
        seg[:, :3] = target + resid[:, :3] @ rot.T
        seg[:, 3:] = resid[:, 3:] @ rot.T
        out.append(seg)
    return np.concatenate(out)[:n]


@dataclass
class SixPoseRecording:
    """A continuous recording: a long still period, then the six poses, with real motion between."""

    data: np.ndarray  # [n, 6] as the distorted sensor reports it
    rate: float
    accel_offset: np.ndarray
    accel_scale: np.ndarray
    gyro_bias: np.ndarray
    pose_spans: dict[str, tuple[int, int]] = field(default_factory=dict)


def six_pose_recording(
    utd_dir: Path,
    accel_offset=(0.05, -0.04, 0.06),
    accel_scale=(1.03, 0.97, 1.02),
    gyro_bias=(4.0, -3.0, 5.0),
    still_s: float = 8.0,
    pose_s: float = 3.0,
) -> SixPoseRecording:
    """Build the six-pose calibration recording (see :func:`real_noise_in_pose`) at 50 Hz.

    Order: +z still for ``still_s`` (device flat on a table), then +x, -x, +y, -y, -z for ``pose_s``
    each; between consecutive stills a real 1.2 s stretch of arm motion (UTD-MHAD action 1, raw).
    The sensor is then distorted by the known model ``a_meas = diag(scale) a + offset``,
    ``g_meas = g + bias``.
    """
    rate = IMU_RATE_UTD
    windows = real_still_windows(utd_dir)
    motion = load_inertial(utd_dir, "a1_s1_t1")
    motion_len = int(1.2 * rate)
    parts, spans, pos, k = [], {}, 0, 0
    for i, (pose, dur) in enumerate([("+z", still_s)] + [(p, pose_s) for p in ("+x", "-x", "+y", "-y", "-z")]):
        if i:
            start = 20 + (i * 13) % max(len(motion) - motion_len - 20, 1)
            parts.append(motion[start:start + motion_len])
            pos += motion_len
        n = int(dur * rate)
        parts.append(real_noise_in_pose(windows, pose, n, k))
        k += n // len(windows[0]) + 1
        spans[pose] = (pos, pos + n)
        pos += n
    true = np.concatenate(parts)
    offset, scale, bias = (np.asarray(v, dtype=np.float64) for v in (accel_offset, accel_scale, gyro_bias))
    measured = np.empty_like(true)
    measured[:, :3] = true[:, :3] * scale + offset
    measured[:, 3:] = true[:, 3:] + bias
    return SixPoseRecording(measured, rate, offset, scale, bias, spans)


def test_six_pose_recording_holds_the_known_distortion(utd_mhad_dir):
    rec = six_pose_recording(utd_mhad_dir)
    a, b = rec.pose_spans["+x"]
    mean = rec.data[a:b].mean(axis=0)
    # +x up: x reads offset + scale·1 g; the residual noise is zero-mean per window.
    assert abs(mean[0] - (0.05 + 1.03)) < 0.003
    assert abs(mean[1] - (-0.04)) < 0.003
    assert np.allclose(mean[3:], rec.gyro_bias, atol=0.3)
    still = rec.data[: int(8 * rec.rate)]
    assert 0.05 < still[:, 3].std() < 3.0  # real noise, neither zero nor motion


# ---- tap recordings for time-offset calibration ---------------------------------------------------
IMU_RATE = 200.0
AUDIO_RATE = 16000
VIDEO_FPS = 30.0
CAMERA_OFFSET_S = 0.047
MIC_OFFSET_S = -0.023
TAP_TIMES_S = (1.52, 2.61, 3.47, 4.83, 5.79)  # after the IMU's first sample; ≥ 0.5 s apart, irregular


def _pingpong(n_frames: int, length: int) -> np.ndarray:
    """Frame indices 0..n-1, n-2..1, 0.. (no jump where the loop turns)."""
    cycle = np.concatenate([np.arange(n_frames), np.arange(n_frames - 2, 0, -1)])
    return cycle[np.arange(length) % len(cycle)]


def imu_tap(t: np.ndarray, t0: float, amplitude: float = 3.0, freq: float = 30.0, tau: float = 0.03) -> np.ndarray:
    """A tap on the table: decaying ringing that starts at ``t0`` (g)."""
    dt = t - t0
    return np.where(dt >= 0, amplitude * np.exp(-np.clip(dt, 0, None) / tau) * np.sin(2 * np.pi * freq * dt), 0.0)


def audio_click(t: np.ndarray, t0: float, rng: np.random.Generator, amplitude: float = 0.8) -> np.ndarray:
    """The tap's sound: a damped 3 kHz resonance plus a decaying noise burst, starting at ``t0``."""
    dt = t - t0
    on = dt >= 0
    env = np.exp(-np.clip(dt, 0, None) / 0.004)
    wave = 0.7 * np.sin(2 * np.pi * 3000 * dt) + 0.3 * rng.standard_normal(len(t))
    return np.where(on, amplitude * env * wave, 0.0)


@dataclass
class TapRecording:
    """Three streams of one tapping session (host seconds), with the truth they were built from."""

    imu_t: np.ndarray
    imu: np.ndarray  # [n, 6]
    audio_t: np.ndarray
    audio: np.ndarray  # [n] float32
    video_t: np.ndarray
    video: np.ndarray  # [n, H, W, 3] uint8
    taps: np.ndarray  # true tap times on the IMU's timeline
    camera_offset: float
    mic_offset: float


def tap_recording(
    utd_dir: Path,
    fsdd_dir: Path,
    taps: tuple[float, ...] | None = TAP_TIMES_S,
    duration_s: float = 7.0,
    camera_offset: float = CAMERA_OFFSET_S,
    mic_offset: float = MIC_OFFSET_S,
    mic_drift_ppm: float = 0.0,
    with_video: bool = True,
    seed: int = 7,
    trial: str = "a16_s2_t1",
    speaker: str = "george",
) -> TapRecording:
    """A tapping session built from real signals, taps injected at known times.

    * IMU, 200 Hz: UTD-MHAD ``trial`` (default ``a16_s2_t1``, arm curl) upsampled 50→200 Hz (``resample_poly``) and
      looped back and forth; each tap adds :func:`imu_tap` along (0.3, 0.2, 0.93), generated at 8 kHz
      and brought to 200 Hz by ``resample_poly`` (a zero-phase anti-alias filter, like a sensor's
      low-pass, minus its delay). IMU timestamps are true time (the reference).
    * microphone, 16 kHz: FSDD digits of ``speaker`` resampled 8→16 kHz, placed one after another
      with short pauses; each tap adds :func:`audio_click`. Its sample grid starts 0.137 s after the
      IMU's; timestamps = true time + ``mic_offset`` (+ ``mic_drift_ppm`` × elapsed time).
    * camera, 30 fps: UTD-MHAD depth of the same ``trial`` (millimetres) rendered to grey uint8 (near =
      bright), looped back and forth; each tap lights a 120×120 patch (+90 grey) for 150 ms. Each
      frame integrates light over the frame period ending at its exposure end, so a frame
      straddling a tap holds that fraction of the flash. Timestamps = exposure end + ``camera_offset``.
    """
    rng = np.random.default_rng(seed)
    t0_host = 1000.0  # host monotonic seconds at the IMU's first sample
    tap_abs = t0_host + np.asarray(taps if taps else (), dtype=np.float64)

    # IMU
    base = load_inertial(utd_dir, trial)
    up = resample_poly(base, 4, 1, axis=0, padtype="line")
    n_imu = int(duration_s * IMU_RATE)
    imu = up[_pingpong(len(up), n_imu)].copy()
    imu_t = t0_host + np.arange(n_imu) / IMU_RATE
    if len(tap_abs):
        fine_t = t0_host + np.arange(n_imu * 40) / (IMU_RATE * 40)
        fine = sum(imu_tap(fine_t, t) for t in tap_abs)
        direction = np.array([0.3, 0.2, 0.93])
        tap_samples = resample_poly(fine, 1, 40)[:n_imu]
        imu[:, :3] += tap_samples[:, None] * direction / np.linalg.norm(direction)
        imu[:, 3:] += tap_samples[:, None] * np.array([40.0, -25.0, 10.0])  # the jolt rotates the device a little

    # audio
    start_a = t0_host + 0.137
    n_audio = int((duration_s - 0.2) * AUDIO_RATE)
    audio = np.zeros(n_audio)
    pos = int(0.1 * AUDIO_RATE)
    files = sorted((fsdd_dir / "recordings").glob(f"*_{speaker}_*.wav"))
    i = 0
    while pos < n_audio:
        x, sr = soundfile.read(files[(i * 7) % len(files)])
        i += 1
        y = resample_poly(x, AUDIO_RATE // sr, 1)
        y = 0.3 * y / (np.abs(y).max() + 1e-9)
        m = min(len(y), n_audio - pos)
        audio[pos:pos + m] += y[:m]
        pos += m + int(rng.uniform(0.05, 0.25) * AUDIO_RATE)
    audio_true_t = start_a + np.arange(n_audio) / AUDIO_RATE
    for t in tap_abs:
        near = np.abs(audio_true_t - t - 0.05) < 0.06
        audio[near] += audio_click(audio_true_t[near], t, rng)
    audio_t = audio_true_t + mic_offset + mic_drift_ppm * 1e-6 * (audio_true_t - start_a)

    # video
    if with_video:
        depth = scipy.io.loadmat(utd_dir / "Depth" / f"{trial}_depth.mat")["d_depth"]  # H×W×T uint16 mm
        mm = depth.astype(np.float32)
        grey = np.where(mm > 0, 150.0 - 130.0 * np.clip((mm - 500.0) / 3500.0, 0, 1), 0.0)
        n_vid = int((duration_s - 0.3) * VIDEO_FPS)
        period = 1.0 / VIDEO_FPS
        exp_end = t0_host + 0.061 + (np.arange(n_vid) + 1) * period
        frames = grey[:, :, _pingpong(grey.shape[2], n_vid)].transpose(2, 0, 1).copy()
        for t in tap_abs:
            on = np.clip(np.minimum(exp_end, t + 0.15) - np.maximum(exp_end - period, t), 0, None) / period
            frames[:, 60:180, 100:220] += (90.0 * on)[:, None, None]
        video = np.repeat(np.clip(np.rint(frames), 0, 255).astype(np.uint8)[..., None], 3, axis=3)
        video_t = exp_end + camera_offset
    else:
        video = np.zeros((0, 1, 1, 3), np.uint8)
        video_t = np.zeros(0)
    return TapRecording(imu_t, imu.astype(np.float32), audio_t, audio.astype(np.float32), video_t, video,
                        tap_abs, camera_offset, mic_offset)


def test_tap_recording_injects_taps_where_it_says(utd_mhad_dir, fsdd_dir):
    rec = tap_recording(utd_mhad_dir, fsdd_dir)
    tap = rec.taps[0]
    # IMU: a multi-g jolt within 20 ms after the tap, far above the real motion in the 50 ms before
    i = np.searchsorted(rec.imu_t, tap)
    before = np.linalg.norm(rec.imu[i - 12:i - 2, :3] - rec.imu[i - 12, :3], axis=1).max()
    after = np.linalg.norm(rec.imu[i:i + 4, :3] - rec.imu[i - 2, :3], axis=1).max()
    assert after > 1.0 and before < 0.3 * after
    # audio: the click starts at tap + mic offset on the microphone's timestamps
    j = np.searchsorted(rec.audio_t, tap + rec.mic_offset)
    assert np.abs(rec.audio[j - 40:j - 1]).max() < 0.35 < np.abs(rec.audio[j:j + 8]).max()
    # video: the flash is in the frames stamped after tap + camera offset, not before
    k = np.searchsorted(rec.video_t, tap + rec.camera_offset)
    patch = rec.video[:, 60:180, 100:220, 0].astype(float).mean(axis=(1, 2))
    assert patch[k + 1] - patch[k - 1] > 60
