"""A physical model of a tapping session: the device is lifted and struck down onto a table.

Used by ``tests/test_calibration_taps.py``. One tap, in the world: the device rests on the table;
the hand lifts it ``height`` (raised-cosine, ``up_s``), may hold it a moment, then strikes it down
(downward speed growing from 0 as ``u**m`` over ``down_s``, so the speed at contact is
``height (m + 1) / down_s``) and it stops dead on the table at the contact time. Each stream sees
that one physical moment differently:

* **camera**: a blob (device + hand, ``size_px``, a given grey level) moves up and down over a
  plain, textured or real moving background (UTD-MHAD depth of a person acting). Each frame
  integrates the light of ``n_sub`` instants over its exposure (``exposure`` × frame period,
  ending at the frame's exposure end): motion blur with anti-aliased edges. Camera noise and
  uint8 quantisation on top. Timestamps = exposure end + camera offset.
* **IMU**: the device-frame acceleration (g) of the motion (lift, downswing), plus the impact at
  contact — a half-sine deceleration pulse of ``impact_s`` whose area stops the device — plus a
  ring-down (a damped mode of the device on the table and a slower one of the hand), gravity,
  rotated into a tilted sensor frame. Built at 16 kHz and brought to the IMU rate by
  ``resample_poly`` (a zero-phase anti-alias filter, like the existing tap tests), clipped at the
  sensor's range, plus real wrist-IMU noise (UTD-MHAD wrist recordings, the quietest windows) and
  white noise of a MEMS density. Timestamps are true time: the IMU is the reference clock.
* **microphone**: a click at contact — the hard contact's force (a half-sine of 0.2–0.6 ms) exciting
  a few damped modes of the table and device, with a short noise burst — built at 48 kHz and
  resampled to the audio rate, over a real voice (FSDD digits) and room noise. Timestamps = true
  time + offset.

A tap can be left out of one stream (``missing``), and extra clicks (a cup set down) added to the
audio only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.io
import soundfile
from scipy.ndimage import gaussian_filter
from scipy.signal import resample_poly

from test_calibration_signals import quietest_windows


FINE_IMU_RATE = 16000
FINE_AUDIO_RATE = 48000
G = 9.81


@dataclass(frozen=True)
class TapMotion:
    """One tap's motion: contact time (true seconds) and the shape of the lift and strike."""

    contact: float
    height: float  # m
    up_s: float
    hold_s: float
    down_s: float
    m: float  # downswing speed grows as u**m
    impact_s: float  # duration of the impact pulse

    @property
    def speed(self) -> float:
        """Downward speed at contact (m/s)."""
        return self.height * (self.m + 1.0) / self.down_s

    @property
    def start(self) -> float:
        """When the lift begins."""
        return self.contact - self.down_s - self.hold_s - self.up_s


def height_at(t: np.ndarray, taps: list[TapMotion]) -> np.ndarray:
    """Height of the device above the table (m) at times ``t``."""
    y = np.zeros_like(t, dtype=np.float64)
    for tap in taps:
        t_top = tap.contact - tap.down_s
        t_up_end = t_top - tap.hold_s
        lift = (t >= tap.start) & (t < t_up_end)
        y[lift] = tap.height * 0.5 * (1 - np.cos(np.pi * (t[lift] - tap.start) / tap.up_s))
        y[(t >= t_up_end) & (t < t_top)] = tap.height
        down = (t >= t_top) & (t < tap.contact)
        u = (t[down] - t_top) / tap.down_s
        # speed v u^m → fallen distance h u^(m+1)
        y[down] = tap.height * (1 - u ** (tap.m + 1))
    return y


def vertical_accel(t: np.ndarray, taps: list[TapMotion]) -> np.ndarray:
    """Upward acceleration of the device (m/s²) without the impact: lift and downswing."""
    a = np.zeros_like(t, dtype=np.float64)
    for tap in taps:
        t_top = tap.contact - tap.down_s
        t_up_end = t_top - tap.hold_s
        lift = (t >= tap.start) & (t < t_up_end)
        w = np.pi / tap.up_s
        a[lift] = tap.height * 0.5 * w * w * np.cos(w * (t[lift] - tap.start))
        down = (t >= t_top) & (t < tap.contact)
        u = (t[down] - t_top) / tap.down_s
        a[down] = -tap.speed * tap.m * u ** (tap.m - 1) / tap.down_s
    return a


def impact_pulse(t: np.ndarray, t0: float, duration: float) -> np.ndarray:
    """A half-sine pulse of unit area starting at ``t0`` (1/s)."""
    dt = t - t0
    on = (dt >= 0) & (dt < duration)
    return np.where(on, np.pi / (2 * duration) * np.sin(np.pi * np.clip(dt, 0, duration) / duration), 0.0)


@dataclass
class PhysicalTapSession:
    """Three streams of one modelled tapping session, with the truth they were built from."""

    imu_t: np.ndarray
    imu: np.ndarray  # [n, 6] float32: accel g, gyro deg/s
    audio_t: np.ndarray
    audio: np.ndarray  # [n] float32
    video_t: np.ndarray
    video: np.ndarray  # [n, H, W] uint8 grey
    taps: np.ndarray  # true contact times (IMU clock = true time)
    motions: list[TapMotion]
    camera_offset: float
    mic_offset: float
    extra_clicks: np.ndarray = field(default_factory=lambda: np.zeros(0))
    missing: dict[str, tuple[int, ...]] = field(default_factory=dict)


def make_taps(
    contacts: tuple[float, ...], rng: np.random.Generator, speed: float = 1.0, height_cm: tuple[float, float] = (3, 7),
    impact_ms: tuple[float, float] = (1.0, 3.0),
) -> list[TapMotion]:
    """Random lift-and-strike motions ending at ``contacts``; ``speed`` > 1 strikes faster."""
    out = []
    for c in contacts:
        out.append(TapMotion(
            contact=float(c),
            height=rng.uniform(*height_cm) / 100.0,
            up_s=rng.uniform(0.09, 0.16) / speed,
            hold_s=rng.uniform(0.0, 0.06),
            down_s=rng.uniform(0.08, 0.13) / speed,
            m=rng.uniform(1.0, 2.2),
            impact_s=rng.uniform(*impact_ms) / 1000.0,
        ))
    return out


# ---- IMU ------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def wrist_still_noise(utd_dir: Path, count: int = 12, window: int = 25) -> np.ndarray:
    """Real wrist-IMU noise at 50 Hz ``[n, 6]``: the ``count`` quietest ``window``-sample stretches of
    UTD-MHAD's wrist recordings (actions 1–21, first trials; the arm rests before and after each
    action), each minus its own mean, one after another."""
    wrist = [p for p in sorted((utd_dir / "Inertial").glob("a*_s*_t1_inertial.mat"))
             if int(p.name.split("_")[0][1:]) <= 21]
    return np.concatenate([seg - seg.mean(axis=0) for seg in quietest_windows(wrist, count, window)])


def render_imu(
    taps: list[TapMotion], t0: float, duration_s: float, rate: float, utd_dir: Path, rng: np.random.Generator,
    range_g: float = 16.0, density_ug: float = 200.0, missing: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps, data [n, 6])`` of the IMU (see the module docstring)."""
    down = int(round(FINE_IMU_RATE / rate))
    n = int(duration_s * rate)
    tf = t0 + np.arange(n * down) / FINE_IMU_RATE
    present = [tap for i, tap in enumerate(taps) if i not in missing]
    up_acc = vertical_accel(tf, present)
    for tap in present:
        near = (tf >= tap.contact - 0.001) & (tf < tap.contact + 0.3)
        dt = tf[near] - tap.contact
        on = dt >= 0
        pulse = tap.speed * impact_pulse(tf[near], tap.contact, tap.impact_s)
        peak = tap.speed * np.pi / (2 * tap.impact_s)
        f_dev, tau_dev = rng.uniform(180, 450), rng.uniform(0.004, 0.010)
        f_hand, tau_hand = rng.uniform(20, 40), rng.uniform(0.02, 0.05)
        ring = np.where(on, 0.25 * peak * np.exp(-np.clip(dt, 0, None) / tau_dev)
                        * np.sin(2 * np.pi * f_dev * dt), 0.0)
        hand = np.where(on, 0.3 * tap.speed / tau_hand * np.exp(-np.clip(dt, 0, None) / tau_hand)
                        * np.sin(2 * np.pi * f_hand * dt), 0.0)
        up_acc[near] += pulse + ring + hand
    # the sensor is tilted in the hand: world up expressed in the sensor frame
    up = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), 1.0])
    up /= np.linalg.norm(up)
    lateral = np.cross(up, [1.0, 0.0, 0.0])
    lateral /= np.linalg.norm(lateral)
    # a little sideways sway with the lift (the hand does not move straight up and down)
    side = 0.15 * np.gradient(np.gradient(height_at(tf, present), tf), tf)
    fine = (1.0 + up_acc / G)[:, None] * up + (side / G)[:, None] * lateral
    acc = resample_poly(fine, 1, down, axis=0)[:n]
    gyro = np.zeros_like(acc)
    # real still noise (50 Hz windows, upsampled) plus white sensor noise at the rate's bandwidth
    still = wrist_still_noise(utd_dir)
    reps = int(np.ceil(n / (len(still) * rate / 50.0))) + 1
    noise = resample_poly(np.tile(still, (reps, 1)), int(rate), 50, axis=0)[:n]
    acc = np.clip(acc + noise[:, :3] + density_ug * 1e-6 * np.sqrt(rate / 2) * rng.standard_normal(acc.shape),
                  -range_g, range_g)
    gyro = noise[:, 3:] + 0.05 * rng.standard_normal(gyro.shape)
    ts = t0 + np.arange(n) / rate
    return ts, np.hstack([acc, gyro]).astype(np.float32)


# ---- audio ----------------------------------------------------------------------------------------
def click(t: np.ndarray, t0: float, impact_s: float, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """The sound of an impact at ``t0``: a force pulse of ``impact_s`` (the hard contact of the
    device's corner with the table, shorter than the impact the hand-held IMU feels) exciting three
    damped modes, plus a short noise burst shaped by the pulse (on the 48 kHz grid ``t``)."""
    dt_s = 1.0 / FINE_AUDIO_RATE
    k = np.arange(int(0.06 * FINE_AUDIO_RATE)) * dt_s
    ir = np.zeros_like(k)
    for _ in range(3):
        f, tau = rng.uniform(1200, 6500), rng.uniform(0.003, 0.015)
        ir += rng.uniform(0.4, 1.0) * np.exp(-k / tau) * np.sin(2 * np.pi * f * k)
    force = impact_pulse(t, t0, impact_s)
    y = np.convolve(force, ir)[: len(t)] * dt_s
    burst = force * rng.standard_normal(len(t)) * 0.02
    y = y + np.convolve(burst, np.exp(-k / 0.002))[: len(t)] * dt_s
    return amplitude * y / (np.abs(y).max() + 1e-12)


def render_audio(
    taps: list[TapMotion], t0: float, duration_s: float, rate: int, mic_offset: float, fsdd_dir: Path,
    rng: np.random.Generator, speaker: str = "george", click_amplitude: float = 0.5, speech_level: float = 0.3,
    missing: tuple[int, ...] = (), extra_clicks: tuple[float, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps, samples)`` of the microphone, its grid starting 0.137 s after the IMU's."""
    start = t0 + 0.137
    nf = int((duration_s - 0.2) * FINE_AUDIO_RATE)
    tf = start + np.arange(nf) / FINE_AUDIO_RATE
    y = np.zeros(nf)
    files = sorted((fsdd_dir / "recordings").glob(f"*_{speaker}_*.wav"))
    pos, i = int(0.1 * FINE_AUDIO_RATE), 0
    while pos < nf:
        x, sr = soundfile.read(files[(i * 7) % len(files)])
        i += 1
        s = resample_poly(x, FINE_AUDIO_RATE // sr, 1)
        s = speech_level * s / (np.abs(s).max() + 1e-9)
        m = min(len(s), nf - pos)
        y[pos:pos + m] += s[:m]
        pos += m + int(rng.uniform(0.05, 0.25) * FINE_AUDIO_RATE)
    events = [(tap.contact, rng.uniform(0.0002, 0.0006)) for j, tap in enumerate(taps) if j not in missing]
    events += [(float(c), rng.uniform(0.0002, 0.0006)) for c in extra_clicks]
    for c, d in events:
        sel = (tf >= c - 0.002) & (tf < c + 0.08)
        y[sel] += click(tf[sel], c, d, rng, click_amplitude * rng.uniform(0.7, 1.3))
    y += 0.003 * rng.standard_normal(nf)
    out = resample_poly(y, rate, FINE_AUDIO_RATE)
    ts = start + np.arange(len(out)) / rate + mic_offset
    return ts, out.astype(np.float32)


# ---- camera ---------------------------------------------------------------------------------------
def _coverage(lo: float, hi: float, n: int) -> np.ndarray:
    """Fraction of each pixel [i, i+1) covered by the interval [lo, hi)."""
    edges = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0.0, 1.0)


def background(kind: str, n_frames: int, shape: tuple[int, int], rng: np.random.Generator,
               utd_dir: Path | None = None, trial: str = "a13_s3_t2") -> np.ndarray:
    """``[n, H, W]`` float background: ``plain``, ``texture`` (static) or ``person`` (real depth video)."""
    h, w = shape
    if kind == "plain":
        return np.full((1, h, w), 70.0)
    if kind == "texture":
        tex = gaussian_filter(rng.standard_normal((h, w)), 2.0)
        return (110.0 + 35.0 * tex / tex.std())[None]
    depth = scipy.io.loadmat(utd_dir / "Depth" / f"{trial}_depth.mat")["d_depth"].astype(np.float32)
    grey = np.where(depth > 0, 150.0 - 130.0 * np.clip((depth - 500.0) / 3500.0, 0, 1), 0.0)
    idx = np.arange(n_frames) % (2 * grey.shape[2] - 2)
    idx = np.where(idx < grey.shape[2], idx, 2 * grey.shape[2] - 2 - idx)
    return grey[:h, :w, idx].transpose(2, 0, 1)


def render_video(
    taps: list[TapMotion], t0: float, duration_s: float, fps: float, camera_offset: float, rng: np.random.Generator,
    size_px: tuple[int, int] = (40, 24), level: float = 220.0, px_per_m: float = 600.0, exposure: float = 1.0,
    bg: str = "texture", utd_dir: Path | None = None, missing: tuple[int, ...] = (), n_sub: int = 48,
    shape: tuple[int, int] = (240, 320), noise: float = 1.5, where: tuple[float, float] = (0.62, 0.8),
) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps, frames [n, H, W] uint8)`` of the camera (see the module docstring)."""
    h, w = shape
    period = 1.0 / fps
    n = int((duration_s - 0.3) * fps)
    exp_end = t0 + 0.061 + (np.arange(n) + 1) * period
    backg = background(bg, n, shape, rng, utd_dir)
    present = [tap for i, tap in enumerate(taps) if i not in missing]
    bw, bh = size_px
    x_rest = where[0] * w - bw / 2
    y_rest = where[1] * h  # bottom edge of the blob: the table's surface in the image
    frames = np.empty((n, h, w), np.uint8)
    for k in range(n):
        bgk = backg[k % len(backg)]
        ts = exp_end[k] - exposure * period * (np.arange(n_sub) + 0.5) / n_sub
        lift = height_at(ts, present) * px_per_m
        cy = np.stack([_coverage(y_rest - bh - d, y_rest - d, h) for d in lift])  # [n_sub, H]
        cx = np.stack([_coverage(x_rest - 0.2 * d, x_rest - 0.2 * d + bw, w) for d in lift])  # sideways sway
        cov = cy.T @ cx / n_sub
        img = bgk * (1.0 - cov) + level * cov + noise * rng.standard_normal((h, w))
        frames[k] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return exp_end + camera_offset, frames


def physical_tap_session(
    utd_dir: Path, fsdd_dir: Path, contacts: tuple[float, ...] = (1.3, 2.45, 3.4, 4.9, 6.05, 7.0, 8.65, 10.2),
    duration_s: float = 12.0, imu_rate: float = 200.0, audio_rate: int = 16000, fps: float = 30.0,
    camera_offset: float = -0.045, mic_offset: float = 0.031, speed: float = 1.0, size_px: tuple[int, int] = (40, 24),
    level: float = 220.0, bg: str = "texture", exposure: float = 1.0, speaker: str = "george",
    missing: dict[str, tuple[int, ...]] | None = None, extra_clicks: tuple[float, ...] = (), seed: int = 1,
    impact_ms: tuple[float, float] = (1.0, 3.0), range_g: float = 16.0, click_amplitude: float = 0.5,
    height_cm: tuple[float, float] = (3.0, 7.0),
) -> PhysicalTapSession:
    """A whole modelled session (contacts are seconds after the IMU's first sample)."""
    rng = np.random.default_rng(seed)
    t0 = 1000.0
    missing = missing or {}
    taps = make_taps(tuple(t0 + c for c in contacts), rng, speed=speed, impact_ms=impact_ms, height_cm=height_cm)
    imu_t, imu = render_imu(taps, t0, duration_s, imu_rate, utd_dir, rng, range_g=range_g,
                            missing=missing.get("imu", ()))
    audio_t, audio = render_audio(taps, t0, duration_s, audio_rate, mic_offset, fsdd_dir, rng, speaker=speaker,
                                  missing=missing.get("microphone", ()), click_amplitude=click_amplitude,
                                  extra_clicks=tuple(t0 + c for c in extra_clicks))
    video_t, video = render_video(taps, t0, duration_s, fps, camera_offset, rng, size_px=size_px, level=level,
                                  exposure=exposure, bg=bg, utd_dir=utd_dir, missing=missing.get("camera", ()))
    return PhysicalTapSession(imu_t, imu, audio_t, audio, video_t, video, np.array([t.contact for t in taps]),
                              taps, camera_offset, mic_offset, np.asarray(extra_clicks) + t0, dict(missing))
