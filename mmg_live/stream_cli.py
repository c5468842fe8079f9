"""``mmg-stream``: publish local devices (or a replayed session) over ZeroMQ.

The devices open through :func:`mmg_live.sources.open_sources` (as in ``mmg-live``); the wire
format, the publisher and the subscriber are :mod:`devices.zmq_stream`'s. ``--curve-keygen DIR``
writes a server and a client CURVE certificate pair and exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from devices.base import DeviceError
from devices.zmq_stream import DEFAULT_BIND, ZmqPublisher
from mmg_live.device_arguments import add_device_arguments, device_config
from mmg_live.sources import OpenedSource, all_finished, device_factories, open_sources

PROG = "mmg-stream"


def build_parser() -> argparse.ArgumentParser:
    """The ``mmg-stream`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Publish camera/microphone/IMU chunks over ZeroMQ (loopback by default)."
    )
    add_device_arguments(parser, pose=False)
    parser.add_argument(
        "--bind", default=DEFAULT_BIND,
        help=f"endpoint to bind (default {DEFAULT_BIND}; other interfaces only when given here)",
    )
    parser.add_argument("--curve-secret", metavar="FILE", help="publisher CURVE secret certificate (*.key_secret)")
    parser.add_argument("--curve-clients", metavar="DIR", help="only admit clients whose public certificates are here")
    parser.add_argument("--curve-keygen", metavar="DIR", help="write server and client CURVE certificates and exit")
    parser.add_argument("--seconds", type=float, default=None, help="stop after N seconds (default: until Ctrl-C)")
    parser.add_argument("--wait-subscriber", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for a subscriber before starting the devices")
    return parser


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def keygen(folder: str | os.PathLike) -> int:
    """Write ``server.key(_secret)`` and ``client.key(_secret)`` into ``folder``; the exit status."""
    import zmq.auth

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        if (path / f"{name}.key_secret").exists():
            _err(f"{path / (name + '.key_secret')} exists; not overwriting")
            return 1
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(str(path), name)
        os.chmod(secret, 0o600)
    print(f"{PROG}: wrote {path}/server.key(_secret) and {path}/client.key(_secret)")
    print(f"  publisher:  mmg-stream --curve-secret {path}/server.key_secret ...")
    print(f"  subscriber: mmg-live --remote ENDPOINT --curve-server-key {path}/server.key")
    return 0


class _Publishing:
    """``open_sources``' ``before_start`` hook: the publisher, listing every stream before any starts."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.publisher: ZmqPublisher | None = None

    def __call__(self, built: list[OpenedSource]) -> None:
        args = self.args
        sources = [o.source for o in built]
        self.publisher = ZmqPublisher(args.bind, curve_secret=args.curve_secret, curve_clients=args.curve_clients,
                                      sources=sources)  # DeviceError when it cannot bind
        names = ", ".join(s.name for s in sources) or "nothing"
        print(f"{PROG}: publishing on {self.publisher.endpoint}: {names}", flush=True)
        if args.wait_subscriber > 0 and not self.publisher.wait_for_subscribers(1, args.wait_subscriber):
            _err(f"no subscriber within {args.wait_subscriber:g} s; starting anyway")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmg-stream`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.curve_keygen:
        return keygen(args.curve_keygen)
    if args.curve_clients and not args.curve_secret:
        parser.error("--curve-clients needs --curve-secret")
    config = device_config(args)
    try:
        device_factories(config)  # a bad --imu spec fails here, before anything opens
    except ValueError as exc:
        parser.error(str(exc))
    if config.empty():
        parser.error("nothing to publish: give --camera, --mic, --imu and/or --replay")
    publishing = _Publishing(args)
    started: list[OpenedSource] = []
    try:
        try:
            started = open_sources(config, before_start=publishing, on_message=_err).started
        except DeviceError as exc:
            _err(str(exc))
            return 1
        if not started:
            _err("no device could be opened")
            return 1
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
            if all_finished([o.source for o in started]):
                break
    except KeyboardInterrupt:
        pass
    finally:
        for o in started:
            o.source.stop()
        pub = publishing.publisher
        if pub is not None:
            pub.flush(2.0)
            pub.close()
            pub.ctx.term()  # waits (up to the linger time) until queued messages are sent
    for o in started:
        print(f"{PROG}: {o.source.name}: {o.source.health().samples} samples sent", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
