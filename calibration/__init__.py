"""Calibration: IMU intrinsics and time offsets between devices, stored in a profile that devices apply.

Public entry points: :class:`CalibrationProfile` (load/save), :func:`apply_imu`,
:func:`apply_time_offset`, :func:`apply_to_chunk`, :class:`ProfileApplier`,
:func:`synchronizer_offsets`; algorithms in :mod:`calibration.imu` and :mod:`calibration.sync`;
the ``mmg-calibrate`` CLI in :mod:`calibration.cli`.
"""

from calibration.errors import CalibrationError
from calibration.profile import (
    CalibrationProfile,
    ImuCalibration,
    ProfileApplier,
    TimeOffset,
    apply_imu,
    apply_time_offset,
    apply_to_chunk,
    synchronizer_offsets,
)

__all__ = [
    "CalibrationError",
    "CalibrationProfile",
    "ImuCalibration",
    "ProfileApplier",
    "TimeOffset",
    "apply_imu",
    "apply_time_offset",
    "apply_to_chunk",
    "synchronizer_offsets",
]
