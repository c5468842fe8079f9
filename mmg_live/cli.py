"""``mmg-live``: the live app's command line.

Parses the options into one :class:`~mmg_live.options.LiveOptions` and runs the Qt GUI
(``mmg_live.gui.app.main(options)``) or, with ``--headless``, a capture loop: every source that
opens (``--camera``, ``--mic``, ``--imu``, ``--remote``, ``--replay``; see
:func:`mmg_live.sources.open_sources`) is recorded with ``--record DIR`` and summarised per stream
at the end. A device that fails to open is reported on one line and the others keep going; the
exit status is non-zero only when none opened.

Headless inference runs when ``--checkpoint`` or any prediction output (``--jsonl``,
``--prototypes``, ``--publish``) is given, with the shipped default model when no
``--checkpoint`` is: every prediction is one JSON line on stdout (status lines then go to
stderr), optionally also in ``--jsonl FILE`` and on a ZeroMQ publisher. ``--demo`` replays the
built-in session of :mod:`mmg_live.demo` (looping, labelled as a replay) with the shipped default
checkpoint, in the GUI or, with ``--headless``, as JSON lines.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from devices.base import host_now
from mmg_common import one_line
from mmg_live.device_arguments import add_device_arguments, add_remote_arguments, device_config
from mmg_live.export.format import BACKENDS
from mmg_live.live.memory import limit_malloc_arenas
from mmg_live.live.threads import set_inference_threads
from mmg_live.options import LiveOptions
from mmg_live.sources import (OpenedSource, all_finished, calibration_record, device_settings, load_calibration,
                              open_sources, parse_imu_spec)

PROG = "mmg-live"


def build_parser() -> argparse.ArgumentParser:
    """The ``mmg-live`` argument parser."""
    p = argparse.ArgumentParser(prog=PROG, description="Real-time multimodal action recognition (video, audio, IMU).")
    src = p.add_argument_group("sources")
    add_device_arguments(src)
    add_remote_arguments(src)
    run = p.add_argument_group("run")
    run.add_argument("--headless", action="store_true", help="no GUI: capture (and record) from the command line")
    run.add_argument("--record", metavar="DIR", help="record every source into this new session folder")
    run.add_argument("--video-codec", choices=("ffv1", "mp4v", "mjpg"), default="ffv1",
                     help="recorded video: ffv1 lossless (default, ~13 MB/s at 640x480x30) or mp4v/mjpg (lossy, small)")
    run.add_argument("--seconds", type=float, default=None, metavar="N", help="stop after N seconds")
    run.add_argument("--demo", action="store_true",
                     help="no hardware needed: replay built-in recorded trials (clearly labelled) "
                          "with the default model")
    run.add_argument("--calibration", metavar="FILE", help="calibration profile (JSON); stored with recordings")
    inf = p.add_argument_group(
        "inference",
        "The GUI always predicts (with the shipped default model unless --checkpoint is given). With --headless, "
        "predictions are made when --checkpoint, --jsonl, --prototypes or --publish is given (the shipped default "
        "model without --checkpoint) and printed as JSON lines on stdout; otherwise it only captures.")
    inf.add_argument("--checkpoint", metavar="FILE",
                     help="model checkpoint (safetensors + JSON); 'default' = the shipped model (the GUI's default)")
    inf.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="compute device")
    inf.add_argument("--prototypes", metavar="FILE", help="custom-action prototype bank")
    inf.add_argument("--jsonl", metavar="FILE", help="append predictions as JSON lines")
    inf.add_argument("--stride", type=float, default=0.25, metavar="S",
                     help="seconds between predictions (default 0.25; windows are skipped, never queued, "
                          "when inference is slower)")
    inf.add_argument("--threads", type=int, default=None, metavar="N",
                     help="torch threads for inference (default: one fewer than the CPU cores torch would use, "
                          "at least 1: capture and pose estimation need the rest)")
    inf.add_argument("--backend", choices=BACKENDS, default="torch",
                     help="what runs the model: torch (default) or onnxruntime (its ONNX export, CPU only)")
    inf.add_argument("--onnx", metavar="DIR", help="with --backend onnxruntime: the export to run "
                     "(`mmg-export onnx`; default: the checkpoint is exported once into ~/.cache/mmg-live/onnx)")
    inf.add_argument("--publish", metavar="ENDPOINT", nargs="?", const="tcp://127.0.0.1:5556",
                     help="publish predictions over ZeroMQ (default tcp://127.0.0.1:5556)")
    return p


def live_options(args: argparse.Namespace) -> LiveOptions:
    """The typed options of a namespace parsed by :func:`build_parser` (no validation, no defaults filled)."""
    return LiveOptions(
        devices=device_config(args, remote=True), checkpoint=args.checkpoint, device=args.device,
        prototypes=args.prototypes, jsonl=args.jsonl, publish=args.publish, record=args.record,
        video_codec=args.video_codec, calibration=args.calibration, seconds=args.seconds, demo=args.demo,
        headless=args.headless, stride_s=args.stride, backend=args.backend, onnx_dir=args.onnx,
    )


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _default_checkpoint() -> str:
    from mmg_live.assets import default_checkpoint_path

    return str(default_checkpoint_path())


def _with_pose_choice(options: LiveOptions, checkpoint: str | None) -> LiveOptions:
    """Derive a pose stream from the camera only when the model that runs reads pose (and not
    with ``--no-pose``); a checkpoint that cannot be read is reported later, where it is loaded."""
    from mmg_live.checkpoint import CheckpointError, read_info

    reads_pose = False
    if options.devices.pose and checkpoint:
        try:
            reads_pose = "pose" in read_info(checkpoint)[0].trained.encoders
        except (CheckpointError, OSError):
            reads_pose = False
    return replace(options, devices=replace(options.devices, pose=reads_pose))


def _prepare_demo(options: LiveOptions) -> LiveOptions:
    """``--demo``: the built-in replay (written on first run) and the shipped default model."""
    from mmg_live.demo import DEMO_LABEL, demo_session

    if not options.devices.empty():
        raise ValueError("--demo brings its own source; drop --camera/--mic/--imu/--remote/--replay")
    _err("demo: preparing the built-in replay session (first run: ~10 s) ...")
    devices = replace(options.devices, replay=str(demo_session()), loop=True)
    checkpoint = options.checkpoint or _default_checkpoint()
    _err(f"demo: {DEMO_LABEL}\ndemo: session {devices.replay}, model {checkpoint}")
    return replace(options, devices=devices, source_label=DEMO_LABEL, checkpoint=checkpoint)


def _run_gui(options: LiveOptions) -> int:
    try:
        from mmg_live.gui import app
    except ImportError:
        _err("the GUI is not available in this build yet; use --headless (see --help)")
        return 2
    return int(app.main(options) or 0)


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


class _SetupFailed(Exception):
    """The model or the recording could not be set up; the message is the one line to print."""


class _Consumers:
    """What the headless run attaches to the sources before they start: the engine and the writer."""

    def __init__(self, options: LiveOptions, calibration: Any) -> None:
        self.options = options
        self.calibration = calibration
        self.inference: Any = None
        self.writer: Any = None

    def attach(self, built: list[OpenedSource]) -> None:
        """``open_sources``' ``before_start`` hook: raises :class:`_SetupFailed` with the line to print."""
        options = self.options
        if options.runs_inference:
            from mmg_live.live.headless import HeadlessInference

            try:
                self.inference = HeadlessInference(
                    options.checkpoint, [o.source for o in built], device=options.device,
                    prototypes=options.prototypes, jsonl=options.jsonl, publish=options.publish,
                    stride_s=options.stride_s, backend=options.backend, onnx_dir=options.onnx_dir)
            except (ValueError, OSError, RuntimeError) as exc:
                raise _SetupFailed(one_line(exc)) from exc
            if self.inference.warning:
                _err(self.inference.warning)
        if options.record:
            from devices.session import SessionWriter

            devices = {o.source.name: device_settings(o.source, o.label) for o in built}
            try:
                self.writer = SessionWriter(options.record, devices,
                                            calibration=calibration_record(self.calibration, options.calibration),
                                            video_codec=options.video_codec)
            except (OSError, ValueError) as exc:
                if self.inference is not None:
                    self.inference.stop()
                    self.inference = None
                raise _SetupFailed(f"--record {options.record}: {exc}") from exc
            for o in built:
                o.source.subscribe(self.writer.write)


def _headless(options: LiveOptions, calibration: Any = None) -> int:
    # with inference, stdout carries only prediction JSON lines; status lines go to stderr
    out = sys.stderr if options.runs_inference else sys.stdout
    consumers = _Consumers(options, calibration)
    started: list[OpenedSource] = []
    t_start = host_now()
    with _Stopper() as stopper:
        try:
            try:
                opened = open_sources(options.devices, calibration, before_start=consumers.attach, on_message=_err)
            except _SetupFailed as exc:
                _err(str(exc))
                return 1
            started = opened.started
            inference, writer = consumers.inference, consumers.writer
            if writer is not None:
                for o, exc in opened.not_started:
                    writer.update_device(o.source.name, opened=False, error=str(exc))
            if not started:
                _err("no source could be opened; nothing recorded" if writer else "no source could be opened")
                return 1
            names = ", ".join(f"{o.source.name} ({o.source.modality})" for o in started)
            print(f"{PROG}: capturing {names}" + (f" into {options.record}" if writer else ""), file=out, flush=True)
            if inference is not None:
                inference.start()
            deadline = None if options.seconds is None else t_start + options.seconds
            next_counters = host_now()
            while not stopper.event.is_set():
                now = host_now()
                if deadline is not None and now >= deadline:
                    break
                if all_finished([o.source for o in started]):
                    break  # only replays, all played out
                if writer is not None and now >= next_counters:
                    if writer.error is not None:
                        break  # reported below, when closing
                    _update_counters(writer, started)
                    next_counters = now + 1.0
                stopper.event.wait(0.05 if deadline is None else max(0.0, min(0.05, deadline - now)))
        finally:
            for o in started:
                try:
                    o.source.stop()
                except Exception as exc:
                    _err(f"{o.source.name}: stopping failed: {exc}")
            engine_stats = consumers.inference.stop() if consumers.inference is not None else None
            failed = None
            if consumers.writer is not None:
                _update_counters(consumers.writer, started)
                try:
                    consumers.writer.close()
                except RuntimeError as exc:  # SessionError: disk full, folder removed, ...
                    failed = str(exc)
    _summary(started, consumers.writer, host_now() - t_start, options.record, out)
    if engine_stats is not None:
        print(f"{PROG}: {_engine_summary(engine_stats)}", file=out, flush=True)
    if failed:
        _err(f"recording failed: {failed}; what was written before is in {options.record}")
        return 1
    return 0


def _engine_summary(stats: dict[str, Any]) -> str:
    line = f"{stats['predictions']} predictions, {stats['skipped']} windows skipped, {stats['errors']} errors"
    if stats["errors"]:
        line += f" (last: {stats['last_error']})"
    if stats["reason"]:
        line += f"; engine {stats['state']}: {stats['reason']}"
    return line


def _update_counters(writer: Any, started: list[OpenedSource]) -> None:
    for o in started:
        h = o.source.health()
        writer.update_counters(
            o.source.name, samples=h.samples, dropped=h.dropped, bad_lines=h.bad_lines, gaps=h.gaps, late=h.late,
            reconnects=h.reconnects,
        )


def _summary(started: list[OpenedSource], writer: Any, elapsed: float, folder: str | None, out: Any) -> None:
    written = writer.stats() if writer is not None else {}
    print(f"{PROG}: {elapsed:.1f} s captured", file=out)
    for o in started:
        src = o.source
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
    if args.stride <= 0:
        parser.error(f"--stride must be > 0, got {args.stride:g}")
    if args.speed <= 0:
        parser.error(f"--speed must be > 0, got {args.speed:g}")
    if args.pose_rate <= 0:
        parser.error(f"--pose-rate must be > 0, got {args.pose_rate:g}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.onnx and args.backend != "onnxruntime":
        parser.error("--onnx needs --backend onnxruntime")
    if args.backend == "onnxruntime" and args.device == "cuda":
        parser.error("--backend onnxruntime runs on the CPU; leave out --device cuda")
    options = live_options(args)
    try:
        if options.demo:
            options = _prepare_demo(options)
        if options.checkpoint == "default":
            options = replace(options, checkpoint=_default_checkpoint())
        if options.devices.imu is not None:
            parse_imu_spec(options.devices.imu)
        calibration = load_calibration(options.calibration) if options.calibration else None
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        parser.error(one_line(exc))
    if options.record and (Path(options.record) / "session.json").exists():
        parser.error(f"--record {options.record}: already holds a session; choose a new folder")
    if not options.headless or options.runs_inference:
        set_inference_threads(args.threads)
    if not options.headless:
        return _run_gui(options)  # the GUI session derives pose only for a model that reads it
    if options.devices.empty():
        parser.error("no source: give --camera, --mic, --imu, --remote and/or --replay")
    if options.runs_inference and not options.checkpoint:
        try:
            options = replace(options, checkpoint=_default_checkpoint())
        except FileNotFoundError as exc:
            parser.error(one_line(exc))
    try:
        options = _with_pose_choice(options, options.checkpoint if options.runs_inference else None)
    except ValueError as exc:
        parser.error(one_line(exc))
    return _headless(options, calibration)


if __name__ == "__main__":
    sys.exit(main())
