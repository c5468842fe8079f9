"""The one error type the calibration package raises for bad input or failed calibration."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Calibration could not be done or a profile is unusable; the message says what and where."""
