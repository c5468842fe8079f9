"""``mmg-live``: the live app's command line.

Opening any mix of sources (``--camera``, ``--mic``, ``--imu``, ``--remote``,
``--replay``) and headless capture (``--headless [--record DIR] [--seconds N]``), which records
every source that opens into a session folder and prints a per-stream summary. A device that
fails to open is reported on one line and the others keep going; the exit status is non-zero
only when none opened.

Headless inference: with ``--checkpoint`` the live engine runs on the sources and prints every
prediction as one JSON line on stdout (status lines then go to stderr), optionally also to
``--jsonl FILE`` and a ZeroMQ publisher (``--publish``), with custom actions from
``--prototypes``; ``--device`` picks the compute device. ``--config`` is accepted for the GUI.
Without ``--headless`` the Qt GUI (``mmg_live.gui.app.main(args)``) is started. ``--demo``
replays the built-in session of :mod:`mmg_live.demo` (looping, labelled as a replay) with the
shipped default checkpoint, in the GUI or, with ``--headless``, as JSON lines.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from devices.base import Source, host_now
from mmg_live.live.memory import limit_malloc_arenas

PROG = "mmg-live"


def build_parser() -> argparse.ArgumentParser:
    """The ``mmg-live`` argument parser."""
    from devices.zmq_stream import add_device_arguments

    p = argparse.ArgumentParser(prog=PROG, description="Real-time multimodal action recognition (video, audio, IMU).")
    src = p.add_argument_group("sources")
    add_device_arguments(src)
    src.add_argument("--remote", metavar="ENDPOINT", action="append", default=[],
                     help="subscribe to every stream of an mmg-stream publisher (repeatable)")
    src.add_argument("--curve-server-key", metavar="FILE", help="publisher's CURVE public certificate for --remote")
    src.add_argument("--remote-rebase", action="store_true",
                     help="shift --remote timestamps onto this host's clock (estimated from the publisher's beacons)")
    run = p.add_argument_group("run")
    run.add_argument("--headless", action="store_true", help="no GUI: capture (and record) from the command line")
    run.add_argument("--record", metavar="DIR", help="record every source into this new session folder")
    run.add_argument("--video-codec", choices=("ffv1", "mp4v", "mjpg"), default="ffv1",
                     help="recorded video: ffv1 lossless (default, ~13 MB/s at 640x480x30) or mp4v/mjpg (lossy, small)")
    run.add_argument("--seconds", type=float, default=None, metavar="N", help="stop after N seconds")
    run.add_argument("--demo", action="store_true",
                     help="no hardware needed: replay built-in recorded trials (clearly labelled) with the default model")
    run.add_argument("--calibration", metavar="FILE", help="calibration profile (JSON); stored with recordings")
    inf = p.add_argument_group("inference (--headless: predictions as JSON lines on stdout)")
    inf.add_argument("--checkpoint", metavar="FILE",
                     help="model checkpoint (safetensors + JSON); 'default' = the shipped model (the GUI's default)")
    inf.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="compute device")
    inf.add_argument("--prototypes", metavar="FILE", help="custom-action prototype bank")
    inf.add_argument("--jsonl", metavar="FILE", help="append predictions as JSON lines")
    inf.add_argument("--publish", metavar="ENDPOINT", nargs="?", const="tcp://127.0.0.1:5556",
                     help="publish predictions over ZeroMQ (default tcp://127.0.0.1:5556)")
    inf.add_argument("--config", metavar="FILE", help="app configuration file")
    return p


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _device_error(label: str, exc: BaseException) -> str:
    """One line for a device that failed: DeviceError messages already name their device."""
    from devices.base import DeviceError

    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg if isinstance(exc, DeviceError) else f"{label}: {msg}"


def _load_calibration(path: str):
    """The calibration profile (validated); its errors name the file and the field."""
    from calibration.errors import CalibrationError
    from calibration.profile import CalibrationProfile

    try:
        return CalibrationProfile.load(path)
    except (CalibrationError, OSError) as exc:
        raise ValueError(f"--calibration: {' '.join(str(exc).split())}") from None


def _factories(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from devices.zmq_stream import build_sources, open_remote

    factories = build_sources(args, PROG)
    for endpoint in args.remote:
        factories.append(
            (f"remote {endpoint}",
             lambda e=endpoint: open_remote(e, curve_server_key=args.curve_server_key, rebase=args.remote_rebase))
        )
    return factories


def _prepare_demo(args: argparse.Namespace) -> None:
    """``--demo``: the built-in replay (written on first run) and the shipped default model."""
    from mmg_live.demo import DEMO_LABEL, demo_session

    if args.replay or args.camera is not None or args.mic is not None or args.imu or args.remote:
        raise ValueError("--demo brings its own source; drop --camera/--mic/--imu/--remote/--replay")
    _err("demo: preparing the built-in replay session (first run: ~10 s) ...")
    args.replay = str(demo_session())
    args.loop = True
    args.source_label = DEMO_LABEL
    if args.checkpoint is None:
        from mmg_live.assets import default_checkpoint_path

        args.checkpoint = str(default_checkpoint_path())
    _err(f"demo: {DEMO_LABEL}\ndemo: session {args.replay}, model {args.checkpoint}")


def _run_gui(args: argparse.Namespace) -> int:
    try:
        from mmg_live.gui import app  # type: ignore[attr-defined]
    except ImportError:
        _err("the GUI is not available in this build yet; use --headless (see --help)")
        return 2
    return int(app.main(args) or 0)


class _Stopper:
    """Turns SIGINT/SIGTERM into a stop request so recordings are closed cleanly."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Stopper":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _device_settings(src: Source, label: str) -> dict:
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


def _headless(args: argparse.Namespace, calibration=None) -> int:
    # with inference, stdout carries only prediction JSON lines; status lines go to stderr
    out = sys.stderr if args.checkpoint else sys.stdout
    factories = _factories(args)
    sources: list[tuple[str, Source]] = []
    for label, make in factories:
        try:
            for src in make():
                sources.append((label, src))
        except Exception as exc:  # one bad device must not stop the others
            _err(_device_error(label, exc))
    from devices.zmq_stream import unique_names

    unique_names([src for _, src in sources])
    if calibration is not None:
        # Bias/scale on IMU samples, offsets (and drift) on timestamps, before anything sees them.
        from calibration.profile import ProfileApplier

        applier = ProfileApplier(calibration)
        sources = [(label, applier.wrap(src)) for label, src in sources]
    inference = None
    if args.checkpoint:
        from mmg_live.live.engine import HeadlessInference

        try:
            inference = HeadlessInference(args.checkpoint, [src for _, src in sources], device=args.device,
                                          prototypes=args.prototypes, jsonl=args.jsonl, publish=args.publish)
        except (ValueError, OSError, RuntimeError) as exc:
            _err(" ".join(str(exc).split()))
            return 1
        if inference.warning:
            _err(inference.warning)
    writer = None
    if args.record:
        from mmg_live.live.recorder import SessionWriter

        devices = {src.name: _device_settings(src, label) for label, src in sources}
        try:
            applied = None if calibration is None else {"file": str(Path(args.calibration).resolve()),
                                                         **calibration.to_dict()}
            writer = SessionWriter(args.record, devices, calibration=applied, video_codec=args.video_codec)
        except (OSError, ValueError) as exc:
            _err(f"--record {args.record}: {exc}")
            return 1
    started: list[tuple[str, Source]] = []
    t_start = host_now()
    with _Stopper() as stopper:
        try:
            for label, src in sources:
                if writer is not None:
                    src.subscribe(writer.write)
                try:
                    src.start()
                except Exception as exc:
                    _err(_device_error(label, exc))
                    if writer is not None:
                        writer.update_device(src.name, opened=False, error=str(exc))
                    continue
                started.append((label, src))
            if not started:
                _err("no source could be opened; nothing recorded" if writer else "no source could be opened")
                return 1
            names = ", ".join(f"{s.name} ({s.modality})" for _, s in started)
            print(f"{PROG}: capturing {names}" + (f" into {args.record}" if writer else ""), file=out, flush=True)
            if inference is not None:
                inference.start()
            deadline = None if args.seconds is None else t_start + args.seconds
            next_counters = host_now()
            while not stopper.event.is_set():
                now = host_now()
                if deadline is not None and now >= deadline:
                    break
                if all(s.health().extra.get("state") == "finished" for _, s in started):
                    break  # only replays, all played out
                if writer is not None and now >= next_counters:
                    if writer.error is not None:
                        break  # reported below, when closing
                    _update_counters(writer, started)
                    next_counters = now + 1.0
                stopper.event.wait(0.05 if deadline is None else max(0.0, min(0.05, deadline - now)))
        finally:
            for _, src in started:
                try:
                    src.stop()
                except Exception as exc:
                    _err(f"{src.name}: stopping failed: {exc}")
            engine_stats = inference.stop() if inference is not None else None
            failed = None
            if writer is not None:
                _update_counters(writer, started)
                try:
                    writer.close()
                except RuntimeError as exc:  # SessionError: disk full, folder removed, ...
                    failed = str(exc)
    _summary(started, writer, host_now() - t_start, args.record, out)
    if engine_stats is not None:
        print(f"{PROG}: {engine_stats['predictions']} predictions, {engine_stats['skipped']} windows skipped, "
              f"{engine_stats['errors']} errors" + (f" (last: {engine_stats['last_error']})" if engine_stats["errors"] else "")
              + (f"; engine {engine_stats['state']}: {engine_stats['reason']}" if engine_stats["reason"] else ""),
              file=out, flush=True)
    if failed:
        _err(f"recording failed: {failed}; what was written before is in {args.record}")
        return 1
    return 0


def _update_counters(writer: Any, started: list[tuple[str, Source]]) -> None:
    for _, src in started:
        h = src.health()
        writer.update_counters(
            src.name, samples=h.samples, dropped=h.dropped, bad_lines=h.bad_lines, gaps=h.gaps, late=h.late,
            reconnects=h.reconnects,
        )


def _summary(started: list[tuple[str, Source]], writer: Any, elapsed: float, folder: str | None,
             out: Any = None) -> None:
    out = out or sys.stdout
    written = writer.stats() if writer is not None else {}
    print(f"{PROG}: {elapsed:.1f} s captured", file=out)
    for _, src in started:
        h = src.health()
        w = written.get(src.name, {})
        first, last, n = w.get("first_time"), w.get("last_time"), w.get("samples", h.samples)
        rate = (n - 1) / (last - first) if first is not None and last is not None and last > first else 0.0
        line = f"  {src.name:<10} {src.modality:<5} {h.samples:>8} samples"
        if writer is not None:
            line += f"  {n:>8} recorded  {rate:8.2f} Hz"
        line += f"  dropped {h.dropped}  bad_lines {h.bad_lines}  gaps {h.gaps}"
        if w.get("rejected"):
            line += f"  rejected {w['rejected']} ({w.get('error')})"
        if h.error:
            line += f"  error: {h.error}"
        print(line, file=out)
    if folder:
        print(f"{PROG}: session written to {Path(folder).resolve()}", file=out, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmg-live`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # before any capture or inference thread starts: see mmg_live.live.memory
    if args.seconds is not None and args.seconds <= 0:
        parser.error(f"--seconds must be > 0, got {args.seconds:g}")
    if args.speed <= 0:
        parser.error(f"--speed must be > 0, got {args.speed:g}")
    try:
        if args.demo:
            _prepare_demo(args)
        if args.checkpoint == "default":
            from mmg_live.assets import default_checkpoint_path

            args.checkpoint = str(default_checkpoint_path())
        from devices.zmq_stream import parse_imu_spec

        if args.imu is not None:
            parse_imu_spec(args.imu)
        calibration = _load_calibration(args.calibration) if args.calibration else None
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        parser.error(" ".join(str(exc).split()))
    if args.record and (Path(args.record) / "session.json").exists():
        parser.error(f"--record {args.record}: already holds a session; choose a new folder")
    if not args.headless:
        return _run_gui(args)
    if not (args.camera is not None or args.mic is not None or args.imu or args.replay or args.remote):
        parser.error("no source: give --camera, --mic, --imu, --remote and/or --replay")
    for flag in ("prototypes", "jsonl", "publish"):
        if getattr(args, flag) and not args.checkpoint:
            parser.error(f"--{flag} needs --checkpoint (the model that makes the predictions)")
    return _headless(args, calibration)


if __name__ == "__main__":
    sys.exit(main())
