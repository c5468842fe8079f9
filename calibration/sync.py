"""Time offsets (and drift) between streams from tap events, relative to the IMU.

The user taps the IMU device sharply a few times; every stream sees each tap. Events of a stream
are matched to the IMU's by the pattern of inter-tap times (the offset that lines up the most taps,
so a missed or extra detection does not break it), then the offset is the median of matched pairs,
its spread the scaled MAD, and the drift (ppm) a robust linear fit when matched taps span long
enough. Offset = stream timestamp − IMU timestamp of the same tap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import theilslopes

from calibration.errors import CalibrationError
from calibration.events import TapEvents, detect_audio_taps, detect_imu_taps, detect_video_taps
from calibration.profile import CalibrationProfile, TimeOffset
from devices.session import StreamData  # video's data here may be the frame-difference energy [n]

DRIFT_MIN_SPAN_S = 30.0
"""Drift is estimated only when matched taps span at least this long."""


@dataclass
class Match:
    """Matched tap pairs between the reference and one stream."""

    ref_index: np.ndarray
    index: np.ndarray
    offsets: np.ndarray  # stream time − reference time, per pair


@dataclass
class SyncResult:
    """Everything :func:`estimate_offsets` found: offsets per stream, the events and the matches."""

    reference: str
    offsets: dict[str, TimeOffset]
    events: dict[str, TapEvents]
    matches: dict[str, Match] = field(default_factory=dict)

    def to_profile(self, base: CalibrationProfile | None = None) -> CalibrationProfile:
        """A profile with these offsets (keeping ``base``'s IMU intrinsics and other streams)."""
        prof = base if base is not None else CalibrationProfile()
        prof.reference = self.reference
        prof.time_offsets.update(self.offsets)
        return prof


def detect_events(stream: StreamData, video_exposure_s: float | None = None) -> TapEvents:
    """Run the detector that fits the stream's modality (video frames exposed for ``video_exposure_s``,
    default one frame period)."""
    if stream.modality == "imu":
        return detect_imu_taps(stream.data, stream.timestamps, stream.name)
    if stream.modality == "audio":
        return detect_audio_taps(stream.data, stream.timestamps, stream.name)
    if stream.modality == "video":
        return detect_video_taps(stream.data, stream.timestamps, stream.name, exposure_s=video_exposure_s)
    raise CalibrationError(f"{stream.name}: unknown modality {stream.modality!r}")


def match_events(
    ref_times: np.ndarray, times: np.ndarray, tolerance_s: float = 0.06, max_offset_s: float = 1.0
) -> Match:
    """Pair events of a stream with the reference's by the offset that lines up the most of them.

    Every pairwise difference within ``±max_offset_s`` is a candidate offset; each is scored by how
    many one-to-one pairs fall within ``tolerance_s`` of it; ties go to the smaller summed residual
    and then the smaller |offset| (regular tapping makes shifts by one tap nearly as good).
    """
    ref = np.asarray(ref_times, dtype=np.float64)
    other = np.asarray(times, dtype=np.float64)
    best: tuple[tuple[float, float, float], Match] | None = None
    diffs = other[None, :] - ref[:, None]
    for cand in np.unique(np.round(diffs[np.abs(diffs) <= max_offset_s], 6)):
        m = _pairs(ref, other, cand, tolerance_s)
        if len(m.offsets) == 0:
            continue
        # refine the candidate to the median of its pairs, then re-pair once
        m = _pairs(ref, other, float(np.median(m.offsets)), tolerance_s)
        if len(m.offsets) == 0:
            continue
        centre = float(np.median(m.offsets))
        key = (-len(m.offsets), float(np.sum(np.abs(m.offsets - centre))), abs(centre))
        if best is None or key < best[0]:
            best = (key, m)
    if best is None:
        return Match(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    return best[1]


def _pairs(ref: np.ndarray, other: np.ndarray, offset: float, tol: float) -> Match:
    """Greedy one-to-one pairing of ``other`` with ``ref + offset``, closest pairs first."""
    d = np.abs(other[None, :] - (ref[:, None] + offset))
    cand = np.argwhere(d <= tol)
    order = np.argsort(d[cand[:, 0], cand[:, 1]], kind="stable")
    used_r, used_o, ri, oi = set(), set(), [], []
    for r, o in cand[order]:
        if r in used_r or o in used_o:
            continue
        used_r.add(r)
        used_o.add(o)
        ri.append(r)
        oi.append(o)
    ri_a, oi_a = np.asarray(ri, dtype=int), np.asarray(oi, dtype=int)
    sort = np.argsort(ri_a)
    ri_a, oi_a = ri_a[sort], oi_a[sort]
    return Match(ri_a, oi_a, other[oi_a] - ref[ri_a])


def offset_from_match(
    match: Match, times: np.ndarray, modality: str, stream_start: float, drift_min_span_s: float = DRIFT_MIN_SPAN_S
) -> TimeOffset:
    """Median offset and spread (1.4826 × MAD); with matched taps spanning ``drift_min_span_s`` or
    more, a Theil–Sen line gives drift (ppm) and the offset at ``stream_start``."""
    offs = match.offsets
    t = np.asarray(times, dtype=np.float64)[match.index]
    if len(offs) >= 2 and t.max() - t.min() >= drift_min_span_s:
        x = t - stream_start
        if len(offs) >= 3:
            slope, intercept, _, _ = theilslopes(offs, x)
        else:
            slope = (offs[1] - offs[0]) / (x[1] - x[0])
            intercept = offs[0] - slope * x[0]
        resid = offs - (intercept + slope * x)
        spread = float(1.4826 * np.median(np.abs(resid - np.median(resid))))
        return TimeOffset(modality, float(intercept), spread, float(slope * 1e6), int(len(offs)))
    med = float(np.median(offs))
    spread = float(1.4826 * np.median(np.abs(offs - med)))
    return TimeOffset(modality, med, spread, None, int(len(offs)))


def estimate_offsets(
    streams: Sequence[StreamData],
    reference: str | None = None,
    max_offset_s: float = 1.0,
    tolerance_s: float = 0.06,
    min_matches: int = 3,
    drift_min_span_s: float = DRIFT_MIN_SPAN_S,
    video_exposure_s: float | None = None,
) -> SyncResult:
    """Offsets of every stream relative to ``reference`` (default: the first IMU stream).

    ``video_exposure_s``: how long each video frame is exposed (ending at its timestamp); default
    one frame period. A camera with a shorter exposure (bright light) should say so: the contact is
    placed inside the frame from how the frames average the device's last positions.

    Raises CalibrationError when a stream shows no taps ("no tap events found in <stream> …") or
    fewer than ``min_matches`` of its taps line up with the reference's.
    """
    if not streams:
        raise CalibrationError("sync: no streams given")
    names = [s.name for s in streams]
    if len(set(names)) != len(names):
        raise CalibrationError(f"sync: stream names must be unique, got {names}")
    if reference is None:
        imus = [s for s in streams if s.modality == "imu"]
        if not imus:
            raise CalibrationError(f"sync: no IMU stream among {names}; the IMU is the reference clock")
        ref_stream = imus[0]
    else:
        found = [s for s in streams if s.name == reference]
        if not found:
            raise CalibrationError(f"sync: reference stream {reference!r} is not among {names}")
        ref_stream = found[0]
    events = {s.name: detect_events(s, video_exposure_s) for s in streams}
    ref_events = events[ref_stream.name]
    offsets = {ref_stream.name: TimeOffset(ref_stream.modality, 0.0, 0.0, None, len(ref_events))}
    matches: dict[str, Match] = {}
    for s in streams:
        if s is ref_stream:
            continue
        ev = events[s.name]
        tol = tolerance_s
        if s.modality == "video":
            tol += 1.0 / _rate(s.timestamps)
        m = match_events(ref_events.times, ev.times, tol, max_offset_s)
        if len(m.offsets) < min_matches:
            raise CalibrationError(
                f"sync: only {len(m.offsets)} of the {len(ev)} taps in {s.name} line up with the "
                f"{len(ref_events)} taps in {ref_stream.name} (offsets within ±{max_offset_s:.1f} s, "
                f"{min_matches} needed); tap sharply, keep still between taps, check both devices recorded"
            )
        matches[s.name] = m
        offsets[s.name] = offset_from_match(m, ev.times, s.modality, float(s.timestamps[0]), drift_min_span_s)
    return SyncResult(ref_stream.name, offsets, events, matches)


def _rate(timestamps: np.ndarray) -> float:
    dt = np.diff(np.asarray(timestamps, dtype=np.float64))
    return 1.0 / float(np.median(dt)) if len(dt) else 30.0
