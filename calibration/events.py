"""Tap-event detectors: when did the user tap the IMU device, as seen by each stream?

Each detector returns :class:`TapEvents`: the onset time of every tap in the stream's own host
timestamps. Detection is two-stage: a coarse event signal finds taps (robust threshold relative
to the stream's noise and to the typical tap strength; the earliest peak of each cluster, so the
ringing or release of a tap is not a second tap), then a sub-sample refinement finds the onset:

* IMU: vector jerk ``|da/dt|`` finds taps; the onset is the start of the first lobe of the
  acceleration deviation, found on a band-limited (×``4 kHz / rate``) upsampling of the samples
  by extrapolating the lobe's rising edge (20 % → 60 % of the lobe) back to zero.
* audio: 1 ms energy envelope of the high-passed signal finds taps; the onset is the first sample
  whose amplitude crosses a threshold set by the pre-tap noise and the click's peak.
* video: mean absolute frame difference finds taps; the onset is interpolated inside the frame
  interval from how the change splits between the two frames that straddle it (each frame is
  taken to integrate light over the frame period ending at its timestamp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

from calibration.errors import CalibrationError

MIN_SEPARATION_S = 0.3
"""Detections closer than this belong to one tap (the procedure asks for taps ≥ 0.5 s apart)."""


@dataclass(frozen=True)
class TapEvents:
    """Tap onsets found in one stream (times in that stream's host seconds)."""

    stream: str
    modality: str
    times: np.ndarray
    strengths: np.ndarray  # peak of the event signal / detection threshold

    def __len__(self) -> int:
        return len(self.times)


# ---- shared helpers -----------------------------------------------------------------------------
def robust_sigma(x: np.ndarray) -> float:
    """1.4826 × median absolute deviation: the std of the noise, ignoring rare large events."""
    x = np.asarray(x, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _clusters(signal: np.ndarray, times: np.ndarray, threshold: float, min_sep: float) -> list[np.ndarray]:
    """Indices above ``threshold`` grouped into clusters that start ≥ ``min_sep`` apart."""
    above = np.flatnonzero(signal > threshold)
    groups: list[list[int]] = []
    for i in above:
        if groups and times[i] - times[groups[-1][0]] < min_sep:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return [np.asarray(g) for g in groups]


def _keep_typical(groups: list[np.ndarray], signal: np.ndarray, rel: float) -> list[np.ndarray]:
    """Drop clusters weaker than ``rel`` × the 3rd-strongest (a typical tap, robust to one outlier)."""
    if not groups:
        return groups
    peaks = np.array([signal[g].max() for g in groups])
    typical = np.sort(peaks)[::-1][min(2, len(peaks) - 1)]
    return [g for g, p in zip(groups, peaks) if p >= rel * typical]


def _first_peak(signal: np.ndarray, group: np.ndarray, frac: float = 0.5) -> int:
    """The first local maximum in ``group`` reaching ``frac`` of the group's maximum."""
    level = frac * signal[group].max()
    i = int(group[np.argmax(signal[group] >= level)])
    while i + 1 < len(signal) and signal[i + 1] >= signal[i]:
        i += 1
    return i


def _time_at(timestamps: np.ndarray, index: float) -> float:
    """Host time at a fractional sample index (linear between neighbouring stamps)."""
    return float(np.interp(index, np.arange(len(timestamps)), timestamps))


def _rate(timestamps: np.ndarray, what: str) -> float:
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.ndim != 1 or len(ts) < 3:
        raise CalibrationError(f"{what}: need at least 3 timestamps, got {ts.shape}")
    dt = np.diff(ts)
    if not np.all(np.isfinite(ts)) or np.any(dt < 0):
        bad = int(np.argmax(~np.isfinite(dt) | (dt < 0)))
        raise CalibrationError(f"{what}: timestamps go backwards or are not finite at sample {bad + 1}")
    period = float(np.median(dt))
    if period <= 0:
        raise CalibrationError(f"{what}: timestamps do not advance")
    return 1.0 / period


def _rise_onset(t: np.ndarray, d: np.ndarray, start: int, lo: float = 0.2, hi: float = 0.6) -> float:
    """Onset of the lobe of ``d`` (≥ 0) that rises at/after ``start``: its rising edge from ``lo`` to
    ``hi`` of the lobe's peak, extrapolated linearly back to zero.

    For a sine-like or step-like rise this lands within a few percent of the lobe's rise time of the
    true start, independent of the sampling phase.
    """
    i = start
    while i + 1 < len(d) and d[i + 1] >= d[i]:
        i += 1
    peak = d[i]

    def crossing(level: float, j: int) -> tuple[float, int]:
        j = min(j, len(d) - 2)
        while j > 0 and d[j] > level:
            j -= 1
        # d[j] <= level < d[j+1], except at the window's start
        span = d[j + 1] - d[j]
        f = 0.0 if span <= 0 else min(max((level - d[j]) / span, 0.0), 1.0)
        return float(np.interp(j + f, np.arange(len(t)), t)), j

    t_hi, j = crossing(hi * peak, i)
    t_lo, _ = crossing(lo * peak, j + 1)
    return t_lo - (t_hi - t_lo) * lo / (hi - lo)


def _no_events(stream: str, modality: str, duration: float, detail: str) -> CalibrationError:
    return CalibrationError(
        f"no tap events found in {stream} ({modality}, {duration:.1f} s): {detail}; "
        "tap the IMU device sharply on a table in view of the camera and near the microphone"
    )


# ---- IMU ------------------------------------------------------------------------------------------
def detect_imu_taps(
    data: np.ndarray, timestamps: np.ndarray, stream: str = "imu", k: float = 10.0, rel: float = 0.25,
    min_jerk_gps: float = 20.0, min_sep_s: float = MIN_SEPARATION_S,
) -> TapEvents:
    """Tap onsets in IMU data ``[n, ≥3]`` (accel in g in the first three columns).

    A tap is a cluster of vector-jerk samples above ``max(k × noise, min_jerk_gps)`` (g/s) and at
    least ``rel`` × the typical tap's jerk.
    """
    acc = np.asarray(data, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] < 3:
        raise CalibrationError(f"{stream}: IMU data must be [n, 6] (accel first), got shape {acc.shape}")
    acc = acc[:, :3]
    if not np.all(np.isfinite(acc)):
        bad = int(np.argwhere(~np.isfinite(acc))[0][0])
        raise CalibrationError(f"{stream}: non-finite accelerometer value at sample {bad}")
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) != len(acc):
        raise CalibrationError(f"{stream}: {len(ts)} timestamps for {len(acc)} IMU samples")
    rate = _rate(ts, stream)
    duration = float(ts[-1] - ts[0])
    jerk = np.zeros(len(acc))
    jerk[1:] = np.linalg.norm(np.diff(acc, axis=0), axis=1) * rate
    threshold = max(k * robust_sigma(jerk), min_jerk_gps)
    groups = _keep_typical(_clusters(jerk, ts, threshold, min_sep_s), jerk, rel)
    if not groups:
        raise _no_events(stream, "imu", duration, f"no jerk above {threshold:.0f} g/s (max {jerk.max():.0f} g/s)")
    times, strengths = [], []
    up = max(1, int(np.ceil(4000.0 / rate)))
    for g in groups:
        p = _first_peak(jerk, g)
        # the start of the jerk run that leads up to the peak: the tap began just before it
        # (not the cluster's first sample, which may be earlier hand motion)
        first = p
        while first > 0 and jerk[first - 1] > max(threshold, 0.1 * jerk[p]):
            first -= 1
        # Subtract the slow motion the tap rides on: a line fitted to the 50 ms before the tap
        # (stopping short of it, clear of the anti-alias filter's pre-ringing), extrapolated.
        b1 = max(first - 1 - int(0.005 * rate), 1)
        b0 = max(b1 - max(int(0.05 * rate), 3), 0)
        lo, hi = max(p - int(0.06 * rate) - 3, 0), min(p + int(0.06 * rate) + 4, len(acc))
        idx = np.arange(lo, hi, dtype=np.float64)
        seg = acc[lo:hi]
        if up > 1 and len(seg) >= 4:
            seg = resample_poly(seg, up, 1, axis=0, padtype="line")
            idx = lo + np.arange(len(seg)) / up
        if b1 - b0 >= 2:
            coef = np.polyfit(np.arange(b0, b1), acc[b0:b1], 1)  # [2, 3]
            seg = seg - (np.outer(idx, coef[0]) + coef[1])
        else:
            seg = seg - acc[max(p - 2, 0)]
        dev = np.linalg.norm(seg, axis=1)
        t_local = np.interp(idx, np.arange(len(ts)), ts)
        centre = int(np.argmin(np.abs(idx - (first - 2))))
        window = dev[centre:]
        start = centre + int(np.argmax(window >= 0.5 * window.max()))
        times.append(_rise_onset(t_local, dev, start))
        strengths.append(jerk[g].max() / threshold)
    return TapEvents(stream, "imu", np.asarray(times), np.asarray(strengths))


# ---- audio ----------------------------------------------------------------------------------------
def detect_audio_taps(
    samples: np.ndarray, timestamps: np.ndarray, stream: str = "microphone", k: float = 8.0, rel: float = 0.25,
    rise: float = 8.0, highpass_hz: float = 1000.0, min_sep_s: float = MIN_SEPARATION_S,
) -> TapEvents:
    """Tap onsets (clicks) in audio ``[n]`` or ``[n, channels]`` with one timestamp per sample.

    A click is a 1 ms frame (of the signal high-passed at ``highpass_hz``) above ``k`` × the median
    frame energy whose energy is ≥ ``rise`` × the mean of the frames 5–25 ms before it.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise CalibrationError(f"{stream}: audio must be [n] or [n, channels], got shape {np.shape(samples)}")
    if not np.all(np.isfinite(x)):
        raise CalibrationError(f"{stream}: non-finite audio sample at {int(np.argwhere(~np.isfinite(x))[0][0])}")
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) != len(x):
        raise CalibrationError(f"{stream}: {len(ts)} timestamps for {len(x)} audio samples")
    rate = _rate(ts, stream)
    duration = float(ts[-1] - ts[0])
    if highpass_hz and highpass_hz < 0.45 * rate:
        # causal on purpose: a zero-phase filter would smear the click's edge back in time
        x = sosfilt(butter(4, highpass_hz, "highpass", fs=rate, output="sos"), x)
    hop = max(1, int(round(rate * 0.001)))
    nf = len(x) // hop
    env = np.sqrt(np.mean(x[: nf * hop].reshape(nf, hop) ** 2, axis=1))
    env_t = ts[: nf * hop : hop]
    floor = max(float(np.median(env)), 1e-6)
    threshold = k * floor
    # A tap is impulsive: its 1 ms energy jumps far above the level of 5–25 ms before. Speech and
    # music rise over tens of ms, so they fail this test even when loud.
    c = np.concatenate([[0.0], np.cumsum(env)])
    kk = np.arange(nf)
    a, b = np.clip(kk - 25, 0, None), np.clip(kk - 5, 0, None)
    pre = np.where(b > a, (c[b] - c[a]) / np.maximum(b - a, 1), floor)
    sharp = env / (pre + 0.5 * floor)
    onset = np.where(sharp >= rise, env, 0.0)
    groups = _keep_typical(_clusters(onset, env_t, threshold, min_sep_s), env, rel)
    if not groups:
        raise _no_events(
            stream, "audio", duration,
            f"no click rising {rise:.0f}x within a few ms above {threshold:.4f} rms (loudest 1 ms: {env.max():.4f})",
        )
    times, strengths = [], []
    ax = np.abs(x)
    for g in groups:
        c = int(g[0]) * hop  # the first sharp 1 ms frame: the onset is in it or just before
        w0, w1 = max(c - 2 * hop, 0), min(c + 3 * hop, len(x))
        n0 = max(w0 - 10 * hop, 0)
        pre = x[n0:w0] if w0 - n0 > 8 else x[w0:w0 + 8]
        peak = ax[w0:w1].max()
        level = max(6.0 * float(np.sqrt(np.mean(pre ** 2))), 0.2 * peak)
        i = w0 + int(np.argmax(ax[w0:w1] >= level))
        frac = 0.0 if i == 0 or ax[i] == ax[i - 1] else (level - ax[i - 1]) / (ax[i] - ax[i - 1])
        frac = min(max(frac, 0.0), 1.0)
        times.append(_time_at(ts, i - 1 + frac) if i > 0 else float(ts[0]))
        strengths.append(env[g].max() / threshold)
    return TapEvents(stream, "audio", np.asarray(times), np.asarray(strengths))


# ---- video ----------------------------------------------------------------------------------------
def frame_difference_energy(frames: Iterable[np.ndarray], step: int = 2) -> np.ndarray:
    """Mean absolute difference between consecutive grey frames (``[0]`` is 0), one value per frame.

    ``frames`` is an array ``[n, H, W(, C)]`` or any iterable of frames (e.g. read from a file), so
    long recordings need not be held in memory. ``step`` subsamples pixels for speed.
    """
    out = []
    prev = None
    for frame in frames:
        f = np.asarray(frame)
        g = f[::step, ::step].astype(np.float32)
        if g.ndim == 3:
            g = g.mean(axis=2)
        out.append(0.0 if prev is None or prev.shape != g.shape else float(np.mean(np.abs(g - prev))))
        prev = g
    return np.asarray(out, dtype=np.float64)


def detect_video_taps(
    frames_or_energy: np.ndarray | Iterable[np.ndarray], timestamps: np.ndarray, stream: str = "camera",
    k: float = 8.0, rel: float = 0.25, min_level: float = 1.0, min_sep_s: float = MIN_SEPARATION_S,
) -> TapEvents:
    """Tap onsets (motion bursts / flashes) in video frames or a precomputed frame-difference energy ``[n]``."""
    arr = frames_or_energy
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        energy = arr.astype(np.float64)
    else:
        energy = frame_difference_energy(arr)
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) != len(energy):
        raise CalibrationError(f"{stream}: {len(ts)} timestamps for {len(energy)} video frames")
    rate = _rate(ts, stream)
    period = 1.0 / rate
    duration = float(ts[-1] - ts[0])
    e = np.clip(energy - np.median(energy), 0.0, None)
    threshold = max(k * robust_sigma(energy), min_level)
    groups = _keep_typical(_clusters(e, ts, threshold, min_sep_s), e, rel)
    if not groups:
        raise _no_events(stream, "video", duration,
                         f"no frame change above {threshold:.1f} grey levels (max {e.max():.1f})")
    times, strengths = [], []
    for g in groups:
        q = int(g[0])
        prev_pair = e[q - 1] + e[q] if q >= 1 else -1.0
        next_pair = e[q] + e[q + 1] if q + 1 < len(e) else -1.0
        k0 = q - 1 if prev_pair >= next_pair else q
        total = e[k0] + e[k0 + 1] if k0 + 1 < len(e) else 0.0
        frac = e[k0] / total if total > 0 else 1.0
        times.append(float(ts[k0]) - frac * period)
        strengths.append(e[g].max() / threshold)
    return TapEvents(stream, "video", np.asarray(times), np.asarray(strengths))
