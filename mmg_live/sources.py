"""Opening devices, once for every caller: ``mmg-live --headless``, the GUI and ``mmg-stream``.

A :class:`DeviceConfig` names the devices (camera, microphone, serial IMU, replayed session,
remote publishers). :func:`open_sources` builds their sources, reports each device that cannot
be opened on one line (and keeps going with the others), gives every stream a unique name,
applies the calibration profile, lets the caller attach to the sources before any of them starts
(a session writer, an engine's buffers, the GUI's fan-outs, a publisher) and starts them.

Nothing here reads an argparse namespace: the command lines build a :class:`DeviceConfig`
(see :mod:`mmg_live.device_arguments`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from devices.base import DeviceError, Source, host_now
from mmg_common import one_line

#: Baud rate of a serial IMU named without ``@BAUD``.
DEFAULT_BAUD = 115200


@dataclass(frozen=True)
class DeviceConfig:
    """Which devices to open: what ``--camera/--mic/--imu/--replay/--remote`` name.

    Attributes:
        camera: camera index, video file or URL (None: no camera).
        mic: PortAudio device index or name, ``""`` for the default input (None: no microphone).
        imu: serial IMU as ``PORT[@BAUD]`` (None: no serial IMU).
        replay: recorded session folder to replay (None: no replay).
        speed: replay speed factor (> 0).
        loop: replay from the beginning again at the end.
        remote: ``mmg-stream`` publisher endpoints; every stream each one announces is opened.
        curve_server_key: the publishers' CURVE public certificate file (encrypted ``remote``).
        remote_rebase: shift remote timestamps onto this host's clock.
        pose: derive a ``pose`` stream from every camera (a video stream that is not already
            accompanied by a recorded or remote pose stream); see :class:`mmg_live.pose.stream.PoseStream`.
        pose_rate: the most pose estimates a second.
        camera_kind: what the camera shows, ``"colour"`` or ``"depth"`` (a depth map in 8 bit).
    """

    camera: str | None = None
    mic: str | None = None
    imu: str | None = None
    replay: str | None = None
    speed: float = 1.0
    loop: bool = False
    remote: tuple[str, ...] = ()
    curve_server_key: str | None = None
    remote_rebase: bool = False
    pose: bool = False
    pose_rate: float = 15.0
    camera_kind: str = "colour"

    def empty(self) -> bool:
        """True when no device is named."""
        return not (self.camera is not None or self.mic is not None or self.imu or self.replay or self.remote)


class SourceFactory(NamedTuple):
    """One device to open: ``label`` names it in messages, ``make()`` builds its (unstarted) sources."""

    label: str
    make: Callable[[], list[Source]]


# --------------------------------------------------------------------------------------------
# device factories
# --------------------------------------------------------------------------------------------


def parse_imu_spec(spec: str, default_baud: int = DEFAULT_BAUD) -> tuple[str, int]:
    """``"PORT[@BAUD]"`` → ``(port, baud)``; ValueError naming the spec when BAUD is not a number."""
    port, sep, baud = spec.rpartition("@")
    if not sep or "://" in baud:
        return spec, default_baud
    if not baud.isdigit() or int(baud) <= 0:
        raise ValueError(f"--imu {spec!r}: baud rate {baud!r} is not a positive integer")
    return port, int(baud)


def make_camera(spec: str, video_kind: str = "colour") -> Source:
    """``devices.camera.CameraSource(spec)`` (imported only when a camera is asked for)."""
    try:
        from devices import camera
    except ImportError as exc:
        raise DeviceError(f"camera {spec}: camera support is not available ({exc})") from exc
    return camera.CameraSource(spec, video_kind=video_kind)


def make_microphone(device: str | None) -> Source:
    """``devices.microphone.MicrophoneSource(device=...)``; a numeric device is an index."""
    try:
        from devices import microphone
    except ImportError as exc:
        raise DeviceError(f"microphone {device or 'default'}: microphone support is not available ({exc})") from exc
    dev: int | str | None = int(device) if device is not None and device.isdigit() else device
    return microphone.MicrophoneSource(device=dev)


def make_imu(spec: str) -> Source:
    """``devices.imu_serial.SerialImuSource(port, baud=...)`` from ``PORT[@BAUD]``."""
    try:
        from devices import imu_serial
    except ImportError as exc:
        raise DeviceError(f"serial IMU {spec}: serial IMU support is not available ({exc})") from exc
    port, baud = parse_imu_spec(spec)
    return imu_serial.SerialImuSource(port, baud=baud)


def device_factories(config: DeviceConfig) -> list[SourceFactory]:
    """One :class:`SourceFactory` per device ``config`` names; ValueError for a bad ``--imu`` spec."""
    out: list[SourceFactory] = []
    if config.camera is not None:
        camera, kind = config.camera, config.camera_kind
        out.append(SourceFactory(f"camera {camera}", lambda: [make_camera(camera, kind)]))
    if config.mic is not None:
        mic = config.mic
        out.append(SourceFactory(f"microphone {mic or 'default'}", lambda: [make_microphone(mic or None)]))
    if config.imu is not None:
        imu = config.imu
        parse_imu_spec(imu)  # bad spec: fail now, before anything opens
        out.append(SourceFactory(f"imu {imu}", lambda: [make_imu(imu)]))
    if config.replay is not None:
        replay, speed, loop = config.replay, config.speed, config.loop

        def make_replay() -> list[Source]:
            from devices.replay import open_replay

            return list(open_replay(replay, speed=speed, loop=loop))

        out.append(SourceFactory(f"replay {replay}", make_replay))
    for endpoint in config.remote:
        out.append(SourceFactory(f"remote {endpoint}", _remote_factory(endpoint, config)))
    return out


def _remote_factory(endpoint: str, config: DeviceConfig) -> Callable[[], list[Source]]:
    def make() -> list[Source]:
        from devices.zmq_stream import open_remote

        return list(open_remote(endpoint, curve_server_key=config.curve_server_key, rebase=config.remote_rebase))

    return make


def unique_names(sources: Sequence[Source]) -> None:
    """Rename sources in place so no two share a stream name (``imu``, ``imu_2``, ...).

    Two devices of one kind (or a device and a replay) default to the same name; their chunks
    would otherwise be mixed into one stream by recorders, buffers and publishers.
    """
    seen: set[str] = set()
    for src in sources:
        name, k = src.name, 2
        while name in seen:
            name, k = f"{src.name}_{k}", k + 1
        if name != src.name:
            src.name = name
        seen.add(name)


# --------------------------------------------------------------------------------------------
# messages, recorded settings, calibration
# --------------------------------------------------------------------------------------------


def device_error(label: str, exc: BaseException) -> str:
    """One line for a device that failed: DeviceError messages already name their device."""
    msg = one_line(exc)
    return msg if isinstance(exc, DeviceError) else f"{label}: {msg}"


def device_settings(src: Source, label: str) -> dict[str, Any]:
    """What a session folder records about a device: its label, modality, rates and simple extras."""
    h = src.health()
    settings: dict[str, Any] = {"source": label, "modality": src.modality, "nominal_rate": h.nominal_rate}
    if src.modality == "audio" and h.nominal_rate:
        settings["rate"] = h.nominal_rate
    if src.modality == "video" and h.nominal_rate:
        settings["fps"] = h.nominal_rate
    extra = {k: v for k, v in h.extra.items() if isinstance(v, (str, int, float, bool, type(None)))}
    if extra:
        settings["extra"] = extra
    return settings


def load_calibration(path: str | os.PathLike) -> Any:
    """The calibration profile at ``path`` (validated); ValueError naming the file and the field."""
    from calibration.errors import CalibrationError
    from calibration.profile import CalibrationProfile

    try:
        return CalibrationProfile.load(path)
    except (CalibrationError, OSError) as exc:
        raise ValueError(f"--calibration: {one_line(exc)}") from None


def calibration_record(profile: Any, path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The calibration as a session folder stores it: the profile and the file it came from."""
    if profile is None:
        return None
    return {"file": str(Path(path).resolve()) if path else None, **profile.to_dict()}


# --------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------


@dataclass
class OpenedSource:
    """A source built for one device (``label``), calibrated and uniquely named; started or not."""

    label: str
    source: Source
    started_at: float | None = None


@dataclass
class OpenResult:
    """What :func:`open_sources` did.

    Attributes:
        started: the sources that started, in opening order.
        not_started: sources that were built but whose ``start()`` failed, with what it raised.
        messages: one line per device that could not be opened (built or started), in order.
    """

    started: list[OpenedSource] = field(default_factory=list)
    not_started: list[tuple[OpenedSource, Exception]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def open_sources(
    config: DeviceConfig,
    calibration: Any = None,
    *,
    before_start: Callable[[list[OpenedSource]], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> OpenResult:
    """Build, name, calibrate and start the sources of ``config``.

    Steps: build every device's sources (a device that fails is reported and skipped) → give
    each stream a unique name → wrap each source in the calibration profile's applier (IMU
    bias/scale and timestamp offsets, before any subscriber sees a chunk) → ``before_start(built)``
    → start each source (one that fails is reported and left out of :attr:`OpenResult.started`).

    Args:
        config: the devices.
        calibration: a :class:`calibration.profile.CalibrationProfile` to apply, or None.
        before_start: called once with every built source before the first starts: the place to
            subscribe (a session writer, an engine's buffers, a publisher). Whatever it raises
            propagates, with no source started.
        on_message: called with each one-line failure as it happens (also kept in the result).
    """
    result = OpenResult()

    def report(message: str) -> None:
        result.messages.append(message)
        if on_message is not None:
            on_message(message)

    try:
        factories = device_factories(config)
    except ValueError as exc:
        factories = []
        report(one_line(exc))
    built: list[OpenedSource] = []
    for label, make in factories:
        try:
            built.extend(OpenedSource(label, src) for src in make())
        except Exception as exc:  # one bad device must not stop the others
            report(device_error(label, exc))
    if config.pose:
        built.extend(pose_streams(built, config.pose_rate, report))
    unique_names([o.source for o in built])
    if calibration is not None:
        from calibration.profile import ProfileApplier

        applier = ProfileApplier(calibration)
        for o in built:
            o.source = applier.wrap(o.source)
    if before_start is not None:
        before_start(built)
    for o in built:
        try:
            o.source.start()
        except Exception as exc:
            report(device_error(o.label, exc))
            result.not_started.append((o, exc))
            continue
        o.started_at = host_now()
        result.started.append(o)
    return result


def pose_streams(built: Sequence[OpenedSource], rate_hz: float,
                 report: Callable[[str], None]) -> list[OpenedSource]:
    """A :class:`~mmg_live.pose.stream.PoseStream` for each video source, unless the sources
    already carry pose (a replayed or remote session that recorded it)."""
    if any(o.source.modality == "pose" for o in built):
        return []
    from mmg_live.pose.stream import PoseStream

    out = []
    for o in built:
        if o.source.modality == "video":
            try:
                out.append(OpenedSource(f"pose from {o.label}", PoseStream(o.source, rate_hz=rate_hz)))
            except Exception as exc:
                report(device_error(f"pose from {o.label}", exc))
    return out


def all_finished(sources: Sequence[Source]) -> bool:
    """True when every source has played to its end (only replays without ``loop`` ever do)."""
    return bool(sources) and all(src.health().finished for src in sources)


__all__ = [
    "DEFAULT_BAUD", "DeviceConfig", "SourceFactory", "parse_imu_spec", "make_camera", "make_microphone", "make_imu",
    "device_factories", "unique_names", "device_error", "device_settings", "load_calibration", "calibration_record",
    "OpenedSource", "OpenResult", "open_sources", "pose_streams", "all_finished",
]
