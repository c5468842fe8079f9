"""Guided IMU calibrations from a live source (six device poses for the intrinsics, two arm poses
for the mounting): ask for each pose, capture, check, retry.

The user interface is two callables (``ask`` waits for the user and returns, ``say`` shows a
message), so the terminal (``mmg-calibrate imu --imu PORT``) and a GUI dialog share this flow.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from calibration.errors import CalibrationError
from calibration.imu import POSES, calibrate_from_pose_captures, check_pose_capture
from calibration.mounting import MOUNTING_HINTS, MOUNTING_POSES, check_mounting_capture, mounting_rotation
from calibration.profile import ImuCalibration
from devices.base import Chunk

POSE_HINTS = {
    "+z": "flat on the table, top face (+Z) up",
    "-z": "upside down, +Z pointing at the table",
    "+x": "on its edge with +X pointing up",
    "-x": "on its edge with +X pointing down",
    "+y": "on its edge with +Y pointing up",
    "-y": "on its edge with +Y pointing down",
}


class ChunkCollector:
    """Subscribes to a source and gathers IMU samples on request (thread-safe)."""

    def __init__(self, source) -> None:
        self._lock = threading.Lock()
        self._ts: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self._active = False
        self.source = source
        source.subscribe(self._on_chunk)

    def _on_chunk(self, chunk: Chunk) -> None:
        with self._lock:
            if self._active and len(chunk.timestamps):
                self._ts.append(np.asarray(chunk.timestamps, dtype=np.float64))
                self._data.append(np.asarray(chunk.data, dtype=np.float64))

    def collect(self, seconds: float, timeout_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``[n, 6]`` and timestamps spanning ``seconds`` from now on (blocks).

        Raises CalibrationError when the source delivers nothing or too little in time.
        """
        timeout_s = seconds + 5.0 if timeout_s is None else timeout_s
        with self._lock:
            self._ts, self._data, self._active = [], [], True
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                with self._lock:
                    span = float(self._ts[-1][-1] - self._ts[0][0]) if self._ts else 0.0
                if span >= seconds:
                    break
                if time.monotonic() > deadline:
                    name = getattr(self.source, "name", "IMU")
                    raise CalibrationError(
                        f"{name}: only {span:.1f} s of IMU data arrived in {timeout_s:.0f} s (wanted {seconds:.1f} s); "
                        "is the device connected and streaming?"
                    )
                time.sleep(0.02)
        finally:
            with self._lock:
                self._active = False
                ts = np.concatenate(self._ts) if self._ts else np.zeros(0)
                data = np.concatenate(self._data) if self._data else np.zeros((0, 6))
        keep = ts <= ts[0] + seconds
        return data[keep], ts[keep]


def run_guided_imu_calibration(
    source,
    ask: Callable[[str], object],
    say: Callable[[str], object],
    capture_s: float = 3.0,
    still_s: float = 6.0,
    retries: int = 3,
    full_matrix: bool = False,
) -> ImuCalibration:
    """Walk the user through the six poses on a started ``source`` and return the calibration.

    The first pose (+Z up, flat on the table) is held ``still_s`` seconds and also gives the gyro
    bias and noise; each other pose ``capture_s``. A capture that moved or shows the wrong pose
    is explained and repeated up to ``retries`` times.
    """
    collector = ChunkCollector(source)
    captures: dict[str, np.ndarray] = {}
    rates: list[float] = []
    order = ["+z"] + [p for p in POSES if p != "+z"]
    for n, pose in enumerate(order, 1):
        seconds = still_s if pose == "+z" else capture_s
        for attempt in range(retries + 1):
            ask(f"[{n}/6] Place the device {POSE_HINTS[pose]} and keep it still for {seconds:.0f} s… [Enter]")
            say("  capturing…")
            data, ts = collector.collect(seconds)
            if len(ts) < 10:
                raise CalibrationError(f"pose {pose}: only {len(ts)} IMU samples in {seconds:.1f} s")
            rate = 1.0 / float(np.median(np.diff(ts)))
            try:
                check_pose_capture(data[int(0.25 * rate):len(data) - int(0.25 * rate)], pose, rate)
            except CalibrationError as exc:
                if attempt == retries:
                    raise
                say(f"  {exc}")
                continue
            captures[pose] = data
            rates.append(rate)
            say(f"  ok: {len(ts)} samples, mean accel {np.round(data[:, :3].mean(axis=0), 3).tolist()} g")
            break
    return calibrate_from_pose_captures(captures, float(np.median(rates)), full_matrix)


def run_guided_mounting_calibration(
    source,
    ask: Callable[[str], object],
    say: Callable[[str], object],
    capture_s: float = 3.0,
    retries: int = 3,
) -> np.ndarray:
    """Walk the user through the two arm poses on a started ``source`` (an IMU on the wrist,
    intrinsics already applied if there are any) and return the mounting rotation
    (:func:`calibration.mounting.mounting_rotation`).

    A capture in which the arm moved is explained and repeated, up to ``retries`` times; so is the
    second pose when it is too close to the first.
    """
    collector = ChunkCollector(source)
    means: dict[str, np.ndarray] = {}
    for n, pose in enumerate(MOUNTING_POSES, 1):
        for attempt in range(retries + 1):
            ask(f"[{n}/2] With the IMU on your wrist, {MOUNTING_HINTS[pose]}; "
                f"keep still for {capture_s:.0f} s… [Enter]")
            say("  capturing…")
            data, ts = collector.collect(capture_s)
            if len(ts) < 10:
                raise CalibrationError(f"{pose}: only {len(ts)} IMU samples in {capture_s:.1f} s")
            rate = 1.0 / float(np.median(np.diff(ts)))
            edge = int(0.25 * rate)  # the press of Enter and settling
            try:
                mean = check_mounting_capture(data[edge:len(data) - edge], pose)
                if pose == "forward":
                    rotation = mounting_rotation(means["hang"], mean)
            except CalibrationError as exc:
                if attempt == retries:
                    raise
                say(f"  {exc}")
                continue
            means[pose] = mean
            say(f"  ok: {len(ts)} samples, mean accel {np.round(mean, 3).tolist()} g")
            break
    return rotation
