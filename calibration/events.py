"""Tap-event detectors: when did the device touch the table, as seen by each stream?

A tap is the device lifted and struck down onto a table. Every stream is timed at the same
physical moment, the **contact**: the camera sees the device move and stop there, the IMU feels the
lift, the downswing and then a sharp impact, the microphone hears a click. Each detector returns
:class:`TapEvents`: the contact time of every tap in the stream's own host timestamps. Detection is
two-stage: a coarse event signal finds taps (robust threshold relative to the stream's noise and to
the typical tap strength), then a sub-sample refinement places the contact:

* IMU: vector jerk ``|da/dt|`` finds taps; the impact is the first strong lobe of the acceleration
  deviation (not the lift or the downswing, far weaker in jerk), found on a band-limited
  (×``4 kHz / rate``) upsampling of the samples. Its rising edge (20 % → 60 %) is extrapolated back
  to zero; an impact shorter than a sample only shows the sensor's band-limited impulse response,
  whose extrapolated onset lies a known lag (computed for the rate) before the impact, so that lag
  is added back in proportion to how unresolved the lobe is. Axes at the end of the sensor's range
  are left out (or, if all are, the time the range was reached is used).
* audio: 1 ms energy envelope of the high-passed signal finds clicks that rise sharply above the
  preceding few ms (less sharply over a voice, if as loud as the clear clicks); the onset is the
  first sample whose amplitude crosses a threshold set by the pre-tap noise and the click's peak.
* video: frame differences per tile of the picture find bursts of change, summed over the tiles the
  tap changes. A burst holding a motion ends at the contact, placed inside the frame by fitting how
  each frame's exposure (ending at its timestamp) averages the device's last positions
  (:func:`_motion_stop`); a brief change of light with no motion (a flash) is timed by its onset.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
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


def _rise(t: np.ndarray, d: np.ndarray, start: int, lo: float = 0.2, hi: float = 0.6) -> tuple[float, float]:
    """``(onset, rise time)`` of the lobe of ``d`` (≥ 0) that rises at/after ``start``: its rising edge
    from ``lo`` to ``hi`` of the lobe's peak, extrapolated linearly back to zero, and the time that
    edge takes.

    For a sine-like or step-like rise the onset lands within a few percent of the lobe's rise time
    of the true start, independent of the sampling phase.
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
    return t_lo - (t_hi - t_lo) * lo / (hi - lo), t_hi - t_lo


@lru_cache(maxsize=32)
def _impulse_rise(rate: float, up: int) -> tuple[float, float]:
    """``(lag, rise time)`` that :func:`_rise` finds on an impulse sampled at ``rate`` and band-limited
    to its Nyquist frequency (samples of ``sinc``), upsampled ×``up`` as the IMU detector does:
    ``lag`` is how far before the impulse the extrapolated onset lands. Averaged over 8 sampling phases.
    """
    lags, rises = [], []
    n = np.arange(-24, 25, dtype=np.float64)
    for phase in np.arange(8) / 8.0:
        x = np.sinc(n - phase)  # impulse at sample 24 + phase
        fine = np.abs(resample_poly(x, up, 1, padtype="line")) if up > 1 else np.abs(x)
        idx = np.arange(len(fine)) / up
        start = int(np.argmax(fine >= 0.5 * fine.max()))
        onset, rise = _rise(idx, fine, start)
        lags.append(24 + phase - onset)
        rises.append(rise)
    return float(np.mean(lags)) / rate, float(np.mean(rises)) / rate


def _one_per_tap(stream: str, modality: str, times: list[float], strengths: list[float], min_sep: float) -> TapEvents:
    """Events in time order, of those closer than ``min_sep`` only the strongest."""
    keep: list[int] = []
    for i in np.argsort(times, kind="stable"):
        if keep and times[i] - times[keep[-1]] < min_sep:
            if strengths[i] > strengths[keep[-1]]:
                keep[-1] = int(i)
            continue
        keep.append(int(i))
    return TapEvents(stream, modality, np.asarray(times, dtype=np.float64)[keep],
                     np.asarray(strengths, dtype=np.float64)[keep])


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
        axes = _unclipped_axes(acc[lo:hi], acc[b0:b1] if b1 - b0 >= 2 else acc[max(p - 2, 0):max(p - 1, 1)])
        if axes is None:  # every axis that felt the impact hit the sensor's range: when did it get there?
            times.append(_rail_time(acc[lo:hi], ts[lo:hi]))
            strengths.append(jerk[g].max() / threshold)
            continue
        seg = acc[lo:hi][:, axes]
        if up > 1 and len(seg) >= 4:
            seg = resample_poly(seg, up, 1, axis=0, padtype="line")
            idx = lo + np.arange(len(seg)) / up
        if b1 - b0 >= 2:
            coef = np.polyfit(np.arange(b0, b1), acc[b0:b1][:, axes], 1)  # [2, axes]
            seg = seg - (np.outer(idx, coef[0]) + coef[1])
        else:
            seg = seg - acc[max(p - 2, 0), axes]
        dev = np.linalg.norm(seg, axis=1)
        t_local = np.interp(idx, np.arange(len(ts)), ts)
        centre = int(np.argmin(np.abs(idx - (first - 2))))
        window = dev[centre:]
        start = centre + int(np.argmax(window >= 0.5 * window.max()))
        onset, rise = _rise(t_local, dev, start)
        # An impact shorter than a sample reaches the IMU as its band-limited impulse response, whose
        # extrapolated onset lies ``lag`` before the impact; a lobe much wider than that response is
        # resolved and its onset unbiased. In between, the correction shrinks as (response / lobe)³.
        lag, rise_h = _impulse_rise(round(rate, 6), up)
        times.append(onset + lag * min(1.0, (rise_h / max(rise, 1e-9)) ** 3))
        strengths.append(jerk[g].max() / threshold)
    # a slow lift can start a cluster of its own that reaches into the impact: one event per tap
    return _one_per_tap(stream, "imu", times, strengths, min_sep_s)


def _clipped(x: np.ndarray) -> bool:
    """Whether ``x`` holds its extreme for ≥ 2 consecutive samples, ≥ 1 g away from its usual level:
    a sensor at the end of its range (a band-limited impact has a sharp peak)."""
    ax = np.abs(x)
    top = float(ax.max())
    at = ax == top
    return bool(np.any(at[:-1] & at[1:])) and top - abs(float(np.median(x))) >= 1.0


def _unclipped_axes(window: np.ndarray, before: np.ndarray) -> np.ndarray | None:
    """Axes of ``window`` ``[n, 3]`` to time the impact on: all of them unless some hit the sensor's
    range; then the unclipped ones that still see the impact clearly, or None when none does."""
    clipped = np.array([_clipped(window[:, a]) for a in range(window.shape[1])])
    if not clipped.any():
        return np.arange(window.shape[1])
    base = np.median(before, axis=0)
    swing = np.abs(window - base).max(axis=0)
    noise = np.array([robust_sigma(np.diff(before[:, a])) for a in range(before.shape[1])]) if len(before) > 3 \
        else np.zeros(window.shape[1])
    ok = ~clipped & (swing >= np.maximum(0.5, 20.0 * noise))
    return np.flatnonzero(ok) if ok.any() else None


def _rail_time(window: np.ndarray, ts: np.ndarray) -> float:
    """When the first clipped axis reached the sensor's range: between its last sample below the rail
    and its first on it (the midpoint)."""
    firsts = []
    for a in range(window.shape[1]):
        if _clipped(window[:, a]):
            firsts.append(int(np.argmax(np.abs(window[:, a]) == np.abs(window[:, a]).max())))
    i = min(firsts)
    return float(ts[i] - 0.5 * (ts[i] - ts[i - 1])) if i > 0 else float(ts[0])


# ---- audio ----------------------------------------------------------------------------------------
def detect_audio_taps(
    samples: np.ndarray, timestamps: np.ndarray, stream: str = "microphone", k: float = 8.0, rel: float = 0.25,
    rise: float = 8.0, highpass_hz: float = 1000.0, min_sep_s: float = MIN_SEPARATION_S,
) -> TapEvents:
    """Tap onsets (clicks) in audio ``[n]`` or ``[n, channels]`` with one timestamp per sample.

    A click is a 1 ms frame (of the signal high-passed at ``highpass_hz``) above ``k`` × the median
    frame energy whose energy is ≥ ``rise`` × the mean of the frames 5–25 ms before it, or (over a
    voice) ≥ ``rise / 2`` × that mean while at least half as loud as the clear clicks.
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
    # A click over speech rises less far above what came before. Once clear clicks set the level of
    # a tap, a sound as loud as half of it that still rises ≥ rise / 2 within a few ms is a click too.
    typical = float(np.median([env[g].max() for g in groups]))
    onset = np.where((sharp >= rise) | ((sharp >= 0.5 * rise) & (env >= 0.5 * typical)), env, 0.0)
    groups = _keep_typical(_clusters(onset, env_t, threshold, min_sep_s), env, rel)
    times, strengths = [], []
    ax = np.abs(x)
    for g in groups:
        # the first sharp 1 ms frame at least half as strong as the cluster's strongest (a softer sound
        # just before a click, a word's onset, must not take its place): the onset is in it or just before
        c = int(g[np.argmax(onset[g] >= 0.5 * onset[g].max())]) * hop
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
VIDEO_TILE_PX = 16
"""Side of the square tiles (full-resolution pixels) over which frame differences are averaged."""

MOTION_MIN_FRAMES = 3
"""A run of at least this many changing frames is a motion (its end is the contact); shorter is a
step change such as a flash (its onset is the event)."""

REST_S = 0.2
"""Changes closer than this belong to one tap (the lift, a pause at the top and the strike)."""


def frame_difference_energy(frames: Iterable[np.ndarray], step: int = 2, tile_px: int = VIDEO_TILE_PX) -> np.ndarray:
    """Mean absolute difference between consecutive grey frames per tile: ``[n, tiles]`` (row ``[0]`` is 0).

    Tiles are ``tile_px`` × ``tile_px`` full-resolution pixels (edge tiles take the remainder), so the
    tap detector can tell the device's corner of the picture from motion elsewhere; the mean over
    tiles weighted by their area is the whole frame's mean difference. ``frames`` is an array
    ``[n, H, W(, C)]`` or any iterable of frames (e.g. read from a file), so long recordings need not
    be held in memory. ``step`` subsamples pixels for speed.
    """
    out: list[np.ndarray] = []
    prev = None
    edges: tuple[np.ndarray, np.ndarray] | None = None
    for frame in frames:
        f = np.asarray(frame)
        g = f[::step, ::step].astype(np.float32)
        if g.ndim == 3:
            g = g.mean(axis=2)
        if prev is None or prev.shape != g.shape:
            size = max(1, tile_px // step)
            edges = (np.arange(0, g.shape[0], size), np.arange(0, g.shape[1], size))
            n_tiles = len(edges[0]) * len(edges[1])
            out.append(np.zeros(n_tiles))
        else:
            d = np.abs(g - prev)
            sums = np.add.reduceat(np.add.reduceat(d, edges[0], axis=0), edges[1], axis=1)
            counts = np.outer(np.diff(np.append(edges[0], g.shape[0])), np.diff(np.append(edges[1], g.shape[1])))
            out.append((sums / counts).ravel())
        prev = g
    if not out:
        return np.zeros((0, 1))
    if len({len(o) for o in out}) > 1:  # the frame size changed mid-stream: keep the whole-frame mean only
        return np.array([[float(np.mean(o))] for o in out])
    return np.asarray(out, dtype=np.float64)




def _box_basis(t_c: float, ends: np.ndarray, exposure: float) -> np.ndarray:
    """``[frames, 2]``: exposure means of ``max(0, t_c − s)`` and of its square over ``[end − exposure, end]``."""
    a = np.clip(t_c - (ends - exposure), 0.0, None)  # how long before contact the exposure began
    b = np.clip(t_c - ends, 0.0, None)
    return np.stack([(a ** 2 - b ** 2) / (2 * exposure), (a ** 3 - b ** 3) / (3 * exposure)], axis=1)


def _motion_stop(y: np.ndarray, ends: np.ndarray, last: int, exposure: float, period: float) -> float:
    """Sub-frame time at which the motion whose frame differences are ``y`` stops.

    Model: the summed change of the tap's tiles between frames ``j − 1`` and ``j`` is the drop of the
    device's exposure-averaged distance-to-go ``D(s) = α τ + β τ²`` (``τ = max(0, t_c − s)``: the
    distance the device still has to travel at time ``s`` is locally a quadratic in the time left,
    zero from the contact on), each frame averaging over its exposure ``[end − exposure, end]``.
    For every candidate ``t_c`` on a 0.1 ms grid around the last changing frame ``last``, α, β are
    fitted by least squares to the differences of the frames ``last − 2 … last + 2``; the best
    ``t_c`` wins.
    """
    lo, hi = max(last - 2, 1), min(last + 3, len(y))
    obs = y[lo:hi]
    grid = np.arange(ends[max(last - 2, 0)] - exposure, ends[min(last + 1, len(ends) - 1)] + 1e-9, 1e-4)
    best_t, best_r = float(ends[last] - 0.5 * period), np.inf
    for t_c in grid:
        basis = _box_basis(float(t_c), ends[lo - 1:hi], exposure)
        model = basis[:-1] - basis[1:]  # drop of the distance-to-go from frame j - 1 to j
        coef, *_ = np.linalg.lstsq(model, obs, rcond=None)
        if coef[0] <= 0:
            coef = np.array([max(float(model[:, 0] @ obs) / max(float(model[:, 0] @ model[:, 0]), 1e-12), 0.0), 0.0])
        r = float(np.sum((model @ coef - obs) ** 2))
        if r < best_r:
            best_t, best_r = float(t_c), r
    return best_t


def detect_video_taps(
    frames_or_energy: np.ndarray | Iterable[np.ndarray], timestamps: np.ndarray, stream: str = "camera",
    k: float = 8.0, rel: float = 0.25, min_level: float = 0.3, min_sep_s: float = MIN_SEPARATION_S,
    exposure_s: float | None = None,
) -> TapEvents:
    """Tap times in video: frames ``[n, H, W(, C)]`` (or an iterable of frames), per-tile frame
    differences ``[n, tiles]`` (:func:`frame_difference_energy`) or a whole-frame difference ``[n]``.

    Frame differences are summed over the tiles that change during a tap (baseline per tile: its
    median). A tap is a burst of change; changes less than :data:`REST_S` apart are one tap. When the
    burst holds a motion (a run of ≥ :data:`MOTION_MIN_FRAMES` changing frames: the device lifted and
    struck down), the event is where the motion **stops** — the contact — fitted to sub-frame time by
    :func:`_motion_stop` from how each frame, exposed for ``exposure_s`` (default: one frame period)
    up to its timestamp, averages the device's last positions. Otherwise (a brief change of light, a
    flash) the event is the change's onset, interpolated inside the frame interval from how the change
    splits between the two frames that straddle it.
    """
    arr = frames_or_energy
    if isinstance(arr, np.ndarray) and arr.ndim in (1, 2):
        energy = arr.astype(np.float64).reshape(len(arr), -1)
    else:
        energy = frame_difference_energy(arr)
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) != len(energy):
        raise CalibrationError(f"{stream}: {len(ts)} timestamps for {len(energy)} video frames")
    rate = _rate(ts, stream)
    period = 1.0 / rate
    exposure = period if exposure_s is None else float(exposure_s)
    if not 0.0 < exposure <= 1.5 * period:
        raise CalibrationError(f"{stream}: exposure {exposure * 1e3:.1f} ms must be > 0 and within a frame period "
                               f"({period * 1e3:.1f} ms)")
    duration = float(ts[-1] - ts[0])
    n_tiles = energy.shape[1]
    excess = energy - np.median(energy, axis=0)  # [n, tiles], each tile's own baseline removed
    total = np.clip(excess, 0.0, None).sum(axis=1) / n_tiles  # in grey levels over the whole frame
    e = np.clip(total - np.median(total), 0.0, None)
    threshold = max(k * robust_sigma(total), min_level)
    groups = _keep_typical(_clusters(e, ts, threshold, min_sep_s), e, rel)
    if not groups:
        raise _no_events(stream, "video", duration,
                         f"no frame change above {threshold:.1f} grey levels (max {e.max():.1f})")
    times, strengths = [], []
    rest = max(int(round(REST_S * rate)), 1)
    for g in groups:
        # the burst: from the cluster's peak, out to where the change has been quiet for REST_S
        p = int(g[np.argmax(e[g])])
        w0, w1 = max(p - int(round(0.6 * rate)), 0), min(p + int(round(0.6 * rate)) + 1, len(e))
        # the tiles this tap changes: their excess around the burst's peak ≥ 20 % of the strongest tile's
        peak_tile = excess[max(p - 1, 0):p + 2].max(axis=0)
        tiles = peak_tile >= 0.2 * peak_tile.max()
        y = np.clip(excess[:, tiles].sum(axis=1), 0.0, None)
        quiet = max(4.0 * robust_sigma(excess[:, tiles].sum(axis=1)), 0.1 * y[p])
        active = y > quiet
        a = p
        while a > w0 and (active[a - 1] or active[max(a - rest, w0):a].any()):
            a -= 1
        b = p
        while b + 1 < w1 and (active[b + 1] or active[b + 1:min(b + 1 + rest, w1)].any()):
            b += 1
        while a < b and not active[a]:
            a += 1
        while b > a and not active[b]:
            b -= 1
        runs, r0 = [], None
        for j in range(a, b + 2):
            on = j <= b and active[j]
            if on and r0 is None:
                r0 = j
            elif not on and r0 is not None:
                runs.append((r0, j - 1))
                r0 = None
        # a motion somewhere in the burst: the contact ends its last run of ≥ 2 changing frames
        # (the strike; the lift may be a run of its own when the hand paused at the top)
        merged: list[tuple[int, int]] = []
        for r in runs:  # the device turning at the top of the lift: one quiet frame inside a motion
            if merged and r[0] - merged[-1][1] - 1 <= 1:
                merged[-1] = (merged[-1][0], r[1])
            else:
                merged.append(r)
        runs = merged
        motions = [r for r in runs if r[1] - r[0] + 1 >= 2]
        if any(r[1] - r[0] + 1 >= MOTION_MIN_FRAMES for r in runs):
            times.append(_motion_stop(y, ts, motions[-1][1], exposure, period))
        else:
            q = runs[0][0] if runs else int(g[0])
            prev_pair = y[q - 1] + y[q] if q >= 1 else -1.0
            next_pair = y[q] + y[q + 1] if q + 1 < len(y) else -1.0
            k0 = q - 1 if prev_pair >= next_pair else q
            pair = y[k0] + y[k0 + 1] if k0 + 1 < len(y) else 0.0
            frac = y[k0] / pair if pair > 0 else 1.0
            times.append(float(ts[k0]) - frac * period)
        strengths.append(e[g].max() / threshold)
    # a slow lift and strike can make two clusters that find the same burst: one event per tap
    return _one_per_tap(stream, "video", times, strengths, min_sep_s)
