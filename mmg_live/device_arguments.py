"""The device options shared by the ``mmg-live`` and ``mmg-stream`` command lines, and the
:class:`~mmg_live.sources.DeviceConfig` they describe (the only place a namespace becomes one)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from mmg_live.sources import DeviceConfig


def add_device_arguments(parser: Any) -> None:
    """The ``--camera/--mic/--imu/--replay/--speed/--loop`` options (on a parser or an argument group)."""
    parser.add_argument("--camera", metavar="SPEC", help="camera index, video file or URL")
    parser.add_argument(
        "--mic", nargs="?", const="", default=None, metavar="DEVICE",
        help="microphone (optional PortAudio device index or name; default input when omitted)",
    )
    parser.add_argument("--imu", metavar="PORT[@BAUD]", help="serial IMU port, e.g. /dev/ttyACM0@115200")
    parser.add_argument("--replay", metavar="DIR", help="replay a recorded session folder")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    parser.add_argument("--loop", action="store_true", help="replay: start again from the beginning at the end")


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
                          loop=args.loop)
    if not remote:
        return config
    return replace(config, remote=tuple(args.remote), curve_server_key=args.curve_server_key,
                   remote_rebase=args.remote_rebase)
