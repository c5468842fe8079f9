"""Capture devices: every source pushes host-timestamped :class:`Chunk` objects.

Heavy libraries (OpenCV, PortAudio, pyserial) are imported only when a source opens.
"""

from devices.base import Chunk, DeviceError, Health, Source, SourceBase, host_now
from devices.camera import CameraSource
from devices.clock import ClockFit, RateMeter, RateSmoother
from devices.imu_serial import ImuLineParser, LineFormat, SerialImuSource, detect_format
from devices.microphone import MicrophoneSource, list_microphones

__all__ = [
    "Chunk", "DeviceError", "Health", "Source", "SourceBase", "host_now",
    "CameraSource", "MicrophoneSource", "list_microphones", "SerialImuSource",
    "ImuLineParser", "LineFormat", "detect_format", "ClockFit", "RateSmoother", "RateMeter",
]
