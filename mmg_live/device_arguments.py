"""The device options shared by the ``mmg-live`` and ``mmg-stream`` command lines, and the
:class:`~mmg_live.sources.DeviceConfig` they describe (the only place a namespace becomes one)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from mmg_live.sources import DeviceConfig


def add_device_arguments(parser: Any, pose: bool = True) -> None:
    """The ``--camera/--mic/--imu/--replay/--speed/--loop`` options (on a parser or an argument group),
    and with ``pose`` the ``--no-pose/--pose-rate`` options of the pose stream derived from the camera."""
    parser.add_argument("--camera", metavar="SPEC", help="camera index, video file or URL")
    parser.add_argument("--camera-kind", choices=("colour", "depth"), default="colour",
                        help="what the camera shows (default colour; depth: a depth map rendered to 8 bit)")
    parser.add_argument(
        "--mic", nargs="?", const="", default=None, metavar="DEVICE",
        help="microphone (optional PortAudio device index or name; default input when omitted)",
    )
    parser.add_argument("--imu", metavar="PORT[@BAUD]", help="serial IMU port, e.g. /dev/ttyACM0@115200")
    parser.add_argument("--replay", metavar="DIR", help="replay a recorded session folder")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    parser.add_argument("--loop", action="store_true", help="replay: start again from the beginning at the end")
    if not pose:
        return
    parser.add_argument("--no-pose", dest="pose", action="store_false",
                        help="do not derive a pose stream from the camera (default: on when the model reads pose)")
    parser.add_argument("--pose-rate", type=float, default=15.0, metavar="HZ",
                        help="most pose estimates a second (default 15)")


def add_remote_arguments(parser: Any) -> None:
    """The ``--remote/--curve-server-key/--remote-rebase`` options (subscribing to ``mmg-stream``)."""
    parser.add_argument("--remote", metavar="ENDPOINT", action="append", default=[],
                        help="subscribe to every stream of an mmg-stream publisher (repeatable)")
    parser.add_argument("--curve-server-key", metavar="FILE", help="publisher's CURVE public certificate for --remote")
    parser.add_argument("--remote-rebase", action="store_true",
                        help="shift --remote timestamps onto this host's clock "
                             "(estimated from the publisher's beacons)")


def device_config(args: argparse.Namespace, remote: bool = False) -> DeviceConfig:
    """The devices parsed from :func:`add_device_arguments` (and, with ``remote``, :func:`add_remote_arguments`)."""
    config = DeviceConfig(camera=args.camera, mic=args.mic, imu=args.imu, replay=args.replay, speed=args.speed,
                          loop=args.loop, camera_kind=args.camera_kind, pose=getattr(args, "pose", False),
                          pose_rate=getattr(args, "pose_rate", DeviceConfig.pose_rate))
    if not remote:
        return config
    return replace(config, remote=tuple(args.remote), curve_server_key=args.curve_server_key,
                   remote_rebase=args.remote_rebase)
