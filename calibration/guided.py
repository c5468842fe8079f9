"""Guided IMU calibrations from a live source (six device poses for the intrinsics, two arm poses
for the mounting): ask for each pose, capture, check, retry.

The user interface is two callables (``ask`` waits for the user and returns, ``say`` shows a
message), so the terminal (``mmg-calibrate imu --imu PORT``) and a GUI dialog share this flow.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

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


T = TypeVar("T")


def capture_checked(
    collector: ChunkCollector,
    ask: Callable[[str], object],
    say: Callable[[str], object],
    prompt: str,
    seconds: float,
    check: Callable[[np.ndarray, float], T],
    what: str,
    retries: int = 3,
) -> tuple[np.ndarray, float, T]:
    """One guided step: ``ask`` the ``prompt``, capture ``seconds`` of samples, ``check`` them.

    ``check(samples, rate_hz)`` sees the capture without its first and last 0.25 s (the press of
    Enter and settling) and raises :class:`CalibrationError` when the capture is unusable; its
    message is shown and the step repeated, up to ``retries`` times, then raised. Returns the whole
    capture ``[n, 6]``, its sample rate and what ``check`` returned.
    """
    for attempt in range(retries + 1):
        ask(prompt)
        say("  capturing…")
        data, ts = collector.collect(seconds)
        if len(ts) < 10:
            raise CalibrationError(f"{what}: only {len(ts)} IMU samples in {seconds:.1f} s")
        rate = 1.0 / float(np.median(np.diff(ts)))
        edge = int(0.25 * rate)
        try:
            checked = check(data[edge:len(data) - edge], rate)
        except CalibrationError as exc:
            if attempt == retries:
                raise
            say(f"  {exc}")
            continue
        say(f"  ok: {len(ts)} samples, mean accel {np.round(data[:, :3].mean(axis=0), 3).tolist()} g")
        return data, rate, checked
    raise AssertionError("unreachable")


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
        captures[pose], rate, _ = capture_checked(
            collector, ask, say,
            f"[{n}/6] Place the device {POSE_HINTS[pose]} and keep it still for {seconds:.0f} s… [Enter]",
            seconds, lambda samples, rate, pose=pose: check_pose_capture(samples, pose, rate),
            f"pose {pose}", retries)
        rates.append(rate)
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
    _, _, hang = capture_checked(
        collector, ask, say, mounting_prompt(1, capture_s), capture_s,
        lambda samples, rate: check_mounting_capture(samples, "hang"), "hang", retries)

    def forward_rotation(samples: np.ndarray, rate: float) -> np.ndarray:
        return mounting_rotation(hang, check_mounting_capture(samples, "forward"))

    _, _, rotation = capture_checked(collector, ask, say, mounting_prompt(2, capture_s), capture_s,
                                     forward_rotation, "forward", retries)
    return rotation


def mounting_prompt(step: int, capture_s: float) -> str:
    """The instruction for arm pose ``step`` (1: hang, 2: forward) of the mounting calibration."""
    pose = MOUNTING_POSES[step - 1]
    return (f"[{step}/2] With the IMU on your wrist, {MOUNTING_HINTS[pose]}; "
            f"keep still for {capture_s:.0f} s… [Enter]")
