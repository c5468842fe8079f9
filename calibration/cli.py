"""``mmg-calibrate``: IMU intrinsics and time offsets between devices, written to a profile file."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from calibration.errors import CalibrationError
from calibration.profile import CalibrationProfile
from devices.base import DeviceError

TAP_PROCEDURE = """\
time-offset procedure (record a session, then run `mmg-calibrate sync --session DIR`):
  1. start recording with the camera, microphone and IMU all on;
  2. hold the IMU device in view of the camera (not hidden by your hand), within 30 cm of
     the microphone (sound takes 3 ms to travel a metre);
  3. tap it sharply on a table 5 times, about 1 s apart (an uneven rhythm is best):
     each tap, lift it a few cm and strike it straight down onto the table in one
     stroke, without pausing at the top, so it stops dead with a click; then leave it
     resting still on the table for half a second before the next tap;
  4. for drift as well, wait ~30 s and tap 3 more times; then stop recording.
  Each stream times the moment of contact: the camera where the device stops moving,
  the IMU and the microphone the impact. Offsets are relative to the IMU: + means the
  stream's timestamps read late."""

IMU_PROCEDURE = """\
IMU procedure: --imu PORT guides you through six still poses (each axis up, then down;
the first, flat on the table, also measures the gyro bias). Offline, --session DIR uses
a recording that holds the same six still poses (>= 1 s each) in any order."""

MOUNTING_PROCEDURE = """\
Mounting procedure: strap the IMU to your wrist as you will wear it; --imu PORT then asks for
two still arm poses, 3 s each: the arm hanging relaxed at your side, then held straight out in
front of you, level, back of the hand up. The rotation from your mounting to the one the model
learned is stored with the IMU's entry (its intrinsics, if calibrated, are applied first)."""

DESCRIPTION = f"""\
Calibrate mmg-live's devices and write a calibration profile (JSON) that the devices apply
with --calibration FILE.

{IMU_PROCEDURE}

{MOUNTING_PROCEDURE}

{TAP_PROCEDURE}"""


def _parse_port(spec: str) -> tuple[str, int]:
    """``PORT[@BAUD]`` → (port, baud); baud defaults to 115200."""
    port, sep, baud = spec.rpartition("@")
    if not sep or "://" in baud:
        return spec, 115200
    try:
        return port, int(baud)
    except ValueError:
        raise CalibrationError(f"--imu {spec!r}: baud rate {baud!r} is not a number (use PORT@BAUD)") from None


def _output(args: argparse.Namespace) -> tuple[Path, CalibrationProfile]:
    """Where to write and the profile to start from (existing one for --update)."""
    if args.update:
        path = Path(args.update)
        return path, CalibrationProfile.load(path) if path.exists() else CalibrationProfile()
    path = Path(args.out)
    if path.exists() and not args.force:
        raise CalibrationError(f"{path} exists; use --update {path} to merge into it or --force to replace it")
    return path, CalibrationProfile()


def _add_output_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", metavar="PROFILE", help="write a new profile (refuses to overwrite without --force)")
    group.add_argument("--update", metavar="PROFILE",
                       help="merge into this profile (created if missing), keeping its other entries")
    p.add_argument("--force", action="store_true", help="with --out: replace an existing file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmg-calibrate", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{imu,mounting,sync,show}")

    imu = sub.add_parser("imu", help="accelerometer offset/scale and gyro bias", description=IMU_PROCEDURE,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    src = imu.add_mutually_exclusive_group(required=True)
    src.add_argument("--imu", metavar="PORT[@BAUD]", help="live serial IMU, e.g. /dev/ttyACM0@115200 (guided)")
    src.add_argument("--session", metavar="DIR", help="a recorded session folder holding the six still poses")
    imu.add_argument("--stream", help="IMU stream name (the profile entry; default: the session's IMU or 'imu')")
    imu.add_argument("--full-matrix", action="store_true", help="also estimate cross-axis terms (3×3 matrix)")
    imu.add_argument("--capture-s", type=float, default=3.0, help="guided: seconds per pose (default 3)")
    imu.add_argument("--still-s", type=float, default=6.0, help="guided: seconds flat on the table (default 6)")
    _add_output_options(imu)

    mounting = sub.add_parser("mounting", help="how the IMU is turned on the wrist (two arm poses)",
                              description=MOUNTING_PROCEDURE, formatter_class=argparse.RawDescriptionHelpFormatter)
    mounting.add_argument("--imu", metavar="PORT[@BAUD]", required=True,
                          help="live serial IMU, e.g. /dev/ttyACM0@115200 (guided)")
    mounting.add_argument("--stream", default="imu", help="IMU stream name (the profile entry; default 'imu')")
    mounting.add_argument("--capture-s", type=float, default=3.0, help="seconds per pose (default 3)")
    _add_output_options(mounting)

    sync = sub.add_parser("sync", help="time offsets between streams from tap events",
                          description=TAP_PROCEDURE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sync.add_argument("--session", metavar="DIR", required=True, help="the recorded tapping session folder")
    sync.add_argument("--reference", metavar="STREAM", help="reference stream (default: the IMU)")
    sync.add_argument("--max-offset", type=float, default=1.0, metavar="S",
                      help="largest offset to consider, seconds (default 1.0)")
    sync.add_argument("--exposure-ms", type=float, metavar="MS",
                      help="camera exposure time per frame, ms (default: one frame period)")
    _add_output_options(sync)

    show = sub.add_parser("show", help="print a profile")
    show.add_argument("profile", metavar="PROFILE")
    return parser


def _cmd_imu(args: argparse.Namespace) -> int:
    from calibration.imu import calibrate_imu_recording

    path, profile = _output(args)
    if args.session:
        from calibration.session import session_imu

        name, data, _ts, rate = session_imu(args.session, args.stream)
        result = calibrate_imu_recording(data, rate, full_matrix=args.full_matrix)
        cal = result.calibration
        print(f"{args.session}: {len(result.segments)} still stretches; poses "
              + ", ".join(f"{p} {s.length / rate:.1f} s" for p, s in result.poses.items()))
    else:
        from devices.imu_serial import SerialImuSource  # lazily: needs pyserial and a port
        from calibration.guided import run_guided_imu_calibration

        port, baud = _parse_port(args.imu)
        name = args.stream or "imu"
        source = SerialImuSource(port, baud=baud, name=name)
        source.start()
        try:
            cal = run_guided_imu_calibration(source, _ask, print, capture_s=args.capture_s,
                                             still_s=args.still_s, full_matrix=args.full_matrix)
        finally:
            source.stop()
    old = profile.imu.get(name)
    if old is not None and old.mounting is not None:  # new intrinsics, same strap
        cal = replace(cal, mounting=old.mounting)
    profile.imu[name] = cal
    profile.save(path)
    print(profile.summary())
    print(f"wrote {path}")
    return 0


def _cmd_mounting(args: argparse.Namespace) -> int:
    from calibration.guided import run_guided_mounting_calibration
    from calibration.mounting import rotation_angle_deg
    from calibration.profile import ImuCalibration, ProfileApplier
    from devices.imu_serial import SerialImuSource  # lazily: needs pyserial and a port

    if args.capture_s <= 0:
        raise CalibrationError(f"--capture-s {args.capture_s:g}: must be > 0")
    path, profile = _output(args)
    intrinsics = profile.imu.get(args.stream) or ImuCalibration()
    port, baud = _parse_port(args.imu)
    # the poses are read through the IMU's intrinsics (not through an older mounting)
    applier = ProfileApplier(CalibrationProfile(imu={args.stream: replace(intrinsics, mounting=None)}))
    source = applier.wrap(SerialImuSource(port, baud=baud, name=args.stream))
    source.start()
    try:
        rotation = run_guided_mounting_calibration(source, _ask, print, capture_s=args.capture_s)
    finally:
        source.stop()
    profile.imu[args.stream] = replace(intrinsics, mounting=rotation)
    profile.save(path)
    print(f"mounting: the IMU is turned {rotation_angle_deg(rotation):.0f}° from the model's wrist frame")
    print(profile.summary())
    print(f"wrote {path}")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        raise CalibrationError("calibration cancelled (input closed)") from None


def _cmd_sync(args: argparse.Namespace) -> int:
    from calibration.session import session_streams
    from calibration.sync import estimate_offsets

    if args.exposure_ms is not None and args.exposure_ms <= 0:
        raise CalibrationError(f"--exposure-ms {args.exposure_ms:g}: must be > 0")
    path, profile = _output(args)
    streams = session_streams(args.session)
    exposure = None if args.exposure_ms is None else args.exposure_ms / 1000.0
    result = estimate_offsets(streams, reference=args.reference, max_offset_s=args.max_offset,
                              video_exposure_s=exposure)
    for name, ev in result.events.items():
        print(f"{name}: {len(ev)} taps")
    result.to_profile(profile).save(path)
    print(profile.summary())
    print(f"wrote {path}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(CalibrationProfile.load(args.profile).summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmg-calibrate`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return {"imu": _cmd_imu, "mounting": _cmd_mounting, "sync": _cmd_sync,
                "show": _cmd_show}[args.command](args)
    except (CalibrationError, DeviceError) as exc:
        print(f"mmg-calibrate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmg-calibrate: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
