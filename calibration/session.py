"""Read the streams of a recorded session folder for calibration (through ``SessionReader``)."""

from __future__ import annotations

import os

import numpy as np

from calibration.errors import CalibrationError
from calibration.events import frame_difference_energy
from devices.session import SessionError, SessionReader, StreamData


def _reader(folder: str | os.PathLike) -> SessionReader:
    try:
        return SessionReader(folder)
    except SessionError as exc:
        raise CalibrationError(str(exc)) from None


def session_streams(folder: str | os.PathLike) -> list[StreamData]:
    """Every stream of a session that holds samples, as :class:`StreamData`; video as its
    frame-difference energy (what the tap detector needs)."""
    reader = _reader(folder)
    out = []
    for name in reader.streams:
        sd = reader.read(name)
        if len(sd.timestamps) < 3:
            continue  # a device that was off: calibrate the others
        data = sd.data
        if sd.modality == "video":
            data = frame_difference_energy(iter(sd.data))
        out.append(StreamData(name, sd.modality, np.asarray(sd.timestamps, dtype=np.float64), data))
    if not out:
        raise CalibrationError(f"{folder}: session holds no recorded samples")
    return out


def session_imu(folder: str | os.PathLike, stream: str | None = None) -> tuple[str, np.ndarray, np.ndarray, float]:
    """``(name, data [n, 6], timestamps [n], rate)`` of the session's IMU stream (the only one, or ``stream``)."""
    reader = _reader(folder)
    imus = [n for n, info in reader.streams.items() if info.get("modality") == "imu"]
    if stream is not None:
        if stream not in imus:
            raise CalibrationError(f"{folder}: no IMU stream {stream!r}; IMU streams: {imus or 'none'}")
        name = stream
    elif len(imus) == 1:
        name = imus[0]
    else:
        raise CalibrationError(
            f"{folder}: {'no IMU stream' if not imus else f'{len(imus)} IMU streams ({imus}); pick one with --stream'}"
        )
    sd = reader.read(name)
    ts = np.asarray(sd.timestamps, dtype=np.float64)
    if len(ts) < 10:
        raise CalibrationError(f"{folder}: IMU stream {name!r} holds only {len(ts)} samples")
    rate = 1.0 / float(np.median(np.diff(ts)))
    return name, np.asarray(sd.data, dtype=np.float64), ts, rate
