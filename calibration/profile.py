"""Calibration profile: IMU intrinsics and per-stream time offsets, stored as versioned JSON.

Conventions (the functions below and every producer of a profile follow them):

* IMU model, per IMU stream: ``accel_measured = M @ accel_true + accel_offset`` (g) where ``M`` is
  ``diag(accel_scale)`` or the optional full ``accel_matrix``; ``gyro_measured = gyro_true +
  gyro_bias`` (deg/s). :func:`apply_imu` inverts it. Data must be in g and deg/s.
* Time offsets are relative to the reference stream (the IMU): ``offset_s`` is how much later a
  stream's timestamp reads than the IMU's for the same physical event. With ``drift_ppm`` set,
  the offset at host time ``t`` is ``offset_s + drift_ppm * 1e-6 * (t - stream_start)``, where
  ``stream_start`` is the stream's first timestamp (``offset_s`` is the offset at that moment).
  :func:`apply_time_offset` subtracts it, putting the stream on the IMU's timeline.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from calibration.errors import CalibrationError
from calibration.mounting import rotation_angle_deg
from devices.base import Chunk, ChunkCallback, Health
from mmg_common import MODALITIES, atomic_write_json

FORMAT = "mmg-live-calibration"
VERSION = 1


@dataclass
class ImuCalibration:
    """Intrinsics of one IMU stream (units: g for accel, deg/s for gyro)."""

    accel_offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    accel_scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    accel_matrix: np.ndarray | None = None
    gyro_bias: np.ndarray = field(default_factory=lambda: np.zeros(3))
    gyro_noise_std: np.ndarray = field(default_factory=lambda: np.zeros(3))
    accel_noise_std: np.ndarray = field(default_factory=lambda: np.zeros(3))
    still_seconds: float = 0.0
    #: sensor-to-canonical rotation ``C`` (``canonical = C @ corrected``, accel and gyro) from
    #: :mod:`calibration.mounting`; None: the sensor is mounted as the model learned
    mounting: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.accel_offset = np.asarray(self.accel_offset, dtype=np.float64).reshape(3)
        self.accel_scale = np.asarray(self.accel_scale, dtype=np.float64).reshape(3)
        if self.accel_matrix is not None:
            self.accel_matrix = np.asarray(self.accel_matrix, dtype=np.float64).reshape(3, 3)
        self.gyro_bias = np.asarray(self.gyro_bias, dtype=np.float64).reshape(3)
        self.gyro_noise_std = np.asarray(self.gyro_noise_std, dtype=np.float64).reshape(3)
        self.accel_noise_std = np.asarray(self.accel_noise_std, dtype=np.float64).reshape(3)
        if self.mounting is not None:
            self.mounting = np.asarray(self.mounting, dtype=np.float64).reshape(3, 3)

    def accel_model_matrix(self) -> np.ndarray:
        """The 3×3 matrix ``M`` of the accelerometer model (full matrix if set, else diag(scale))."""
        return self.accel_matrix if self.accel_matrix is not None else np.diag(self.accel_scale)


@dataclass
class TimeOffset:
    """Time offset of one stream relative to the reference (IMU) stream."""

    modality: str
    offset_s: float
    spread_s: float = 0.0
    drift_ppm: float | None = None
    n_events: int = 0

    def offset_at(self, timestamps: np.ndarray, stream_start: float | None = None) -> np.ndarray:
        """The offset (s) at each host timestamp; drift counts from ``stream_start`` (default: first timestamp)."""
        ts = np.asarray(timestamps, dtype=np.float64)
        if self.drift_ppm is None or ts.size == 0:
            return np.full(ts.shape, self.offset_s)
        start = float(ts.flat[0]) if stream_start is None else float(stream_start)
        return self.offset_s + self.drift_ppm * 1e-6 * (ts - start)


@dataclass
class CalibrationProfile:
    """IMU intrinsics per IMU stream and time offsets per stream, relative to ``reference``."""

    imu: dict[str, ImuCalibration] = field(default_factory=dict)
    time_offsets: dict[str, TimeOffset] = field(default_factory=dict)
    reference: str = "imu"
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    notes: str = ""

    # ---- lookup -------------------------------------------------------------------------------
    def imu_for(self, stream: str | None = None) -> ImuCalibration | None:
        """The IMU calibration for ``stream``; with None, the only one (None when there is none).

        Raises CalibrationError when ``stream`` is None and the profile holds several IMU streams.
        """
        if stream is not None and stream in self.imu:
            return self.imu[stream]
        if stream is not None and stream != "" and len(self.imu) != 1:
            return None
        if len(self.imu) > 1:
            raise CalibrationError(
                f"calibration profile holds {len(self.imu)} IMU streams ({', '.join(self.imu)}): name the stream"
            )
        return next(iter(self.imu.values()), None)

    def offset_for(self, stream_or_modality: str) -> TimeOffset | None:
        """The time offset for a stream name, else for a modality held by exactly one stream."""
        if stream_or_modality in self.time_offsets:
            return self.time_offsets[stream_or_modality]
        matches = [o for o in self.time_offsets.values() if o.modality == stream_or_modality]
        if len(matches) > 1:
            raise CalibrationError(
                f"calibration profile holds {len(matches)} {stream_or_modality} streams: name the stream"
            )
        return matches[0] if matches else None

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written by :meth:`save`."""
        imu = {}
        for name, cal in self.imu.items():
            imu[name] = {
                "accel_offset_g": cal.accel_offset.tolist(),
                "accel_scale": cal.accel_scale.tolist(),
                "accel_matrix": None if cal.accel_matrix is None else cal.accel_matrix.tolist(),
                "gyro_bias_dps": cal.gyro_bias.tolist(),
                "gyro_noise_std_dps": cal.gyro_noise_std.tolist(),
                "accel_noise_std_g": cal.accel_noise_std.tolist(),
                "still_seconds": cal.still_seconds,
                "mounting": None if cal.mounting is None else cal.mounting.tolist(),
            }
        offsets = {
            name: {
                "modality": o.modality,
                "offset_s": o.offset_s,
                "spread_s": o.spread_s,
                "drift_ppm": o.drift_ppm,
                "n_events": o.n_events,
            }
            for name, o in self.time_offsets.items()
        }
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "reference": self.reference,
            "notes": self.notes,
            "imu": imu,
            "time_offsets": offsets,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str = "profile") -> "CalibrationProfile":
        """Build and validate a profile from its JSON form; errors name ``where`` and the field."""
        if not isinstance(doc, dict):
            raise CalibrationError(f"{where}: not a calibration profile (top level is not a JSON object)")
        if doc.get("format") != FORMAT:
            raise CalibrationError(
                f"{where}: not a calibration profile (format is {doc.get('format')!r}, expected {FORMAT!r})"
            )
        version = doc.get("version")
        if not isinstance(version, int) or version < 1:
            raise CalibrationError(f"{where}: bad profile version {version!r}")
        if version > VERSION:
            raise CalibrationError(f"{where}: profile version {version} is newer than this mmg-live reads ({VERSION})")
        imu_doc = _get(doc, "imu", dict, where, {})
        off_doc = _get(doc, "time_offsets", dict, where, {})
        imu: dict[str, ImuCalibration] = {}
        for name, entry in imu_doc.items():
            at = f"{where}: imu[{name!r}]"
            if not isinstance(entry, dict):
                raise CalibrationError(f"{at} is not an object")
            matrix = entry.get("accel_matrix")
            mounting = entry.get("mounting")
            cal = ImuCalibration(
                accel_offset=_vec(entry, "accel_offset_g", at, (3,), [0.0] * 3),
                accel_scale=_vec(entry, "accel_scale", at, (3,), [1.0] * 3),
                accel_matrix=None if matrix is None else _vec(entry, "accel_matrix", at, (3, 3), None),
                gyro_bias=_vec(entry, "gyro_bias_dps", at, (3,), [0.0] * 3),
                gyro_noise_std=_vec(entry, "gyro_noise_std_dps", at, (3,), [0.0] * 3),
                accel_noise_std=_vec(entry, "accel_noise_std_g", at, (3,), [0.0] * 3),
                still_seconds=_num(entry, "still_seconds", at, 0.0),
                mounting=None if mounting is None else _vec(entry, "mounting", at, (3, 3), None),
            )
            if cal.mounting is not None and not (np.allclose(cal.mounting @ cal.mounting.T, np.eye(3), atol=1e-4)
                                                 and np.linalg.det(cal.mounting) > 0):
                raise CalibrationError(f"{at}.mounting is not a rotation matrix")
            if np.any(np.abs(cal.accel_scale) < 1e-3):
                raise CalibrationError(f"{at}.accel_scale has a zero entry: {cal.accel_scale.tolist()}")
            if abs(np.linalg.det(cal.accel_model_matrix())) < 1e-6:
                raise CalibrationError(f"{at}.accel_matrix is singular")
            imu[str(name)] = cal
        offsets: dict[str, TimeOffset] = {}
        for name, entry in off_doc.items():
            at = f"{where}: time_offsets[{name!r}]"
            if not isinstance(entry, dict):
                raise CalibrationError(f"{at} is not an object")
            modality = entry.get("modality")
            if modality not in MODALITIES:
                raise CalibrationError(f"{at}.modality is {modality!r}; expected one of {MODALITIES}")
            drift = entry.get("drift_ppm")
            offsets[str(name)] = TimeOffset(
                modality=modality,
                offset_s=_num(entry, "offset_s", at, None),
                spread_s=_num(entry, "spread_s", at, 0.0),
                drift_ppm=None if drift is None else _num(entry, "drift_ppm", at, None),
                n_events=int(_num(entry, "n_events", at, 0)),
            )
        return cls(
            imu=imu,
            time_offsets=offsets,
            reference=str(doc.get("reference", "imu")),
            created=str(doc.get("created", "")),
            notes=str(doc.get("notes", "")),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationProfile":
        """Read a profile; raises CalibrationError naming the file for a missing, corrupt or wrong file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CalibrationError(f"{p}: calibration profile not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{p}: cannot read calibration profile ({exc})") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(
                f"{p}: corrupt calibration profile (invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return cls.from_dict(doc, where=str(p))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile atomically (a crash leaves the old file intact); returns the path."""
        return atomic_write_json(path, self.to_dict(), allow_nan=False)

    def summary(self) -> str:
        """A human-readable multi-line description (used by ``mmg-calibrate show``)."""
        lines = [f"calibration profile (format {FORMAT} v{VERSION}, created {self.created or '?'})"]
        if not self.imu:
            lines.append("  IMU intrinsics: none")
        for name, c in self.imu.items():
            lines.append(f"  IMU {name!r}:")
            lines.append(f"    accel offset (g)      {_fmt(c.accel_offset, 4)}")
            lines.append(f"    accel scale           {_fmt(c.accel_scale, 4)}")
            if c.accel_matrix is not None:
                lines.append(f"    accel matrix          {np.array2string(c.accel_matrix, precision=4)}")
            lines.append(f"    gyro bias (deg/s)     {_fmt(c.gyro_bias, 3)}")
            lines.append(f"    gyro noise std (deg/s){_fmt(c.gyro_noise_std, 3)}  from {c.still_seconds:.1f} s still")
            if c.mounting is not None:
                turned = rotation_angle_deg(c.mounting)
                lines.append(f"    mounting: turned {turned:.0f}° from the model's wrist frame, "
                             f"rotation {np.array2string(c.mounting, precision=3)}")
        if not self.time_offsets:
            lines.append(f"  time offsets: none (reference {self.reference!r})")
        else:
            lines.append(f"  time offsets relative to {self.reference!r} (stream timestamp − reference timestamp):")
        for name, o in self.time_offsets.items():
            drift = "" if o.drift_ppm is None else f", drift {o.drift_ppm:+.1f} ppm"
            lines.append(
                f"    {name} ({o.modality}): {o.offset_s * 1e3:+.2f} ms ± {o.spread_s * 1e3:.2f} ms"
                f" from {o.n_events} taps{drift}"
            )
        if self.notes:
            lines.append(f"  notes: {self.notes}")
        return "\n".join(lines)


def _fmt(v: np.ndarray, digits: int) -> str:
    return "[" + ", ".join(f"{x:+.{digits}f}" for x in v) + "]"


def _get(doc: dict, key: str, kind: type, where: str, default: Any) -> Any:
    value = doc.get(key, default)
    if not isinstance(value, kind):
        raise CalibrationError(f"{where}: field {key!r} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _num(doc: dict, key: str, where: str, default: float | None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CalibrationError(f"{where}.{key} must be a finite number, got {value!r}")
    return float(value)


def _vec(doc: dict, key: str, where: str, shape: tuple[int, ...], default: Any) -> np.ndarray:
    value = doc.get(key, default)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}.{key} must be numbers of shape {shape}, got {value!r}") from None
    if arr.shape != shape:
        raise CalibrationError(f"{where}.{key} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{where}.{key} has a non-finite value: {arr.tolist()}")
    return arr


# ---- applying a profile -------------------------------------------------------------------------
def apply_imu(profile: CalibrationProfile, data: np.ndarray, stream: str | None = None) -> np.ndarray:
    """Correct IMU samples ``[n, 6]`` (accel g, gyro deg/s) with the profile's intrinsics, then
    turn them into the model's wrist frame when the profile holds a mounting rotation.

    Returns a new array of the input's float dtype; unchanged values when the profile has no
    calibration for ``stream``.
    """
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise CalibrationError(f"apply_imu: IMU data must be [n, 6] (accel xyz, gyro xyz), got shape {arr.shape}")
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    cal = profile.imu_for(stream)
    if cal is None:
        return arr.astype(out_dtype, copy=True)
    x = arr.astype(np.float64)
    out = np.empty_like(x)
    inv = np.linalg.inv(cal.accel_model_matrix())
    out[:, :3] = (x[:, :3] - cal.accel_offset) @ inv.T
    out[:, 3:] = x[:, 3:] - cal.gyro_bias
    if cal.mounting is not None:  # accel and gyro turn together
        out[:, :3] = out[:, :3] @ cal.mounting.T
        out[:, 3:] = out[:, 3:] @ cal.mounting.T
    return out.astype(out_dtype)


def apply_time_offset(
    profile: CalibrationProfile,
    stream_or_modality: str,
    timestamps: np.ndarray,
    stream_start: float | None = None,
) -> np.ndarray:
    """Map a stream's host timestamps onto the reference (IMU) timeline: ``t - offset(t)``.

    ``stream_or_modality`` is looked up as a stream name, then as a modality with one stream.
    ``stream_start`` anchors drift (default: the first timestamp given). Returns a new float64
    array; unchanged values when the profile holds no offset for the stream.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    off = profile.offset_for(stream_or_modality)
    if off is None:
        return ts.copy()
    return ts - off.offset_at(ts, stream_start)


def apply_to_chunk(profile: CalibrationProfile, chunk: Chunk, stream_start: float | None = None) -> Chunk:
    """A copy of ``chunk`` with IMU intrinsics (IMU chunks) and the stream's time offset applied."""
    key = chunk.stream or chunk.modality
    if profile.offset_for(key) is None and chunk.stream and profile.offset_for(chunk.modality) is not None:
        key = chunk.modality
    timestamps = apply_time_offset(profile, key, chunk.timestamps, stream_start)
    data = chunk.data
    if chunk.modality == "imu":
        data = apply_imu(profile, chunk.data, chunk.stream or None)
    return Chunk(chunk.modality, timestamps, data, chunk.stream)


class ProfileApplier:
    """Applies a profile to chunks of any number of streams, keeping each stream's start for drift.

    Use as a callback filter (``applier(chunk) -> Chunk``) or wrap a source with :meth:`wrap`.
    """

    def __init__(self, profile: CalibrationProfile) -> None:
        self.profile = profile
        self._starts: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, chunk: Chunk) -> Chunk:
        key = f"{chunk.modality}/{chunk.stream}"
        with self._lock:
            if key not in self._starts and len(chunk.timestamps):
                self._starts[key] = float(chunk.timestamps[0])
            start = self._starts.get(key)
        return apply_to_chunk(self.profile, chunk, start)

    def wrap(self, source: Any) -> "CalibratedSource":
        """A Source that forwards ``source``'s chunks with this profile applied."""
        return CalibratedSource(source, self)


class CalibratedSource:
    """A :class:`devices.base.Source` wrapper whose chunks carry the calibration profile applied."""

    def __init__(self, source: Any, applier: ProfileApplier) -> None:
        self._source = source
        self._applier = applier
        self.name: str = source.name
        self.modality: str = source.modality
        self._subscribers: list[ChunkCallback] = []
        self._lock = threading.Lock()
        source.subscribe(self._forward)

    def _forward(self, chunk: Chunk) -> None:
        fixed = self._applier(chunk)
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(fixed)

    def start(self) -> None:
        self._source.start()

    def stop(self) -> None:
        self._source.stop()

    def subscribe(self, callback: ChunkCallback) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def health(self) -> Health:
        return self._source.health()

    def source_time(self, t_host: float) -> float | None:
        """The wrapped source's recording clock at ``t_host`` (a replay's), else None.

        Calibration shifts timestamps by a stream's offset (milliseconds); the recording time of a
        window end is read on the replay's own clock, as without calibration.
        """
        source_time = getattr(self._source, "source_time", None)
        return None if source_time is None else source_time(t_host)


def synchronizer_offsets(profile: CalibrationProfile, streams: dict[str, str] | None = None) -> dict[str, float]:
    """Per-stream offsets in the form ``mmg_live.live.buffer.Synchronizer`` takes (seconds *added*
    to timestamps at read): ``-offset_s`` of each stream.

    ``streams`` maps the live stream names to the name or modality to look up in the profile
    (default: the profile's own stream names). Drift is not included: a Synchronizer offset is a
    constant; devices that need drift correction wrap their chunks with :class:`ProfileApplier`.
    """
    if streams is None:
        return {name: -o.offset_s for name, o in profile.time_offsets.items()}
    out = {}
    for live_name, key in streams.items():
        off = profile.offset_for(key)
        if off is not None:
            out[live_name] = -off.offset_s
    return out
