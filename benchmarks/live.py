"""Live inference end to end: sources → buffers → InferenceEngine → predictions.

What the issue asks to be measured, for a config (``lite`` by default) on a device (``cpu`` by
default) with all three modalities:

* window→prediction latency p50/p95 (``age``: newest sample used → prediction emitted);
* predictions per second and skipped windows (the engine runs every ``--stride`` s on a fixed
  grid; the default 0.08 s allows 12.5 predictions/s; a tick that passes while an inference is still
  running is skipped);
* the enrolment time of one 5-example custom action (``PrototypeBank.add_examples`` of 5, each
  embedding every modality subset, as the GUI's "Finish" does);
* RSS at the start of the run and of the full phase and at its end (run ``--seconds 600`` for
  the issue's 10 minutes).

The goals (p95 ≤ 100 ms, ≥ 10 predictions/s, enrolment ≤ 0.5 s, RSS growth ≤ 20 MB over the
full phase) are printed next to the measured values with PASS/MISS.

Like ``mmg-live``, the benchmark caps glibc's malloc arenas at 2 before any thread starts and
the engine gives the heap's free pages back every 10 s (``mmg_live.live.memory``);
``MALLOC_ARENA_MAX=64`` in the environment (glibc's default here) and ``--trim-memory-s 0`` turn
them off, to see what they save.

Sources: synthetic looping replay sources (default; their frame size, IMU rate and audio rate
follow the config: 120x160 gray for ``lite``, 256x256 RGB for ``paper``), the built-in demo
session (``--demo``: real UTD-MHAD trials + FSDD speech, looping) or a recorded session
(``--replay DIR``). Model: ``--checkpoint PATH`` (or ``default``, the shipped model) loads
real weights; otherwise the ``--config`` is built untrained and marked trained on all three
modalities (weights do not change the cost).

Two phases on the same sources, in this order:

* ``baseline``: the engine with no smoothing and no prototype bank;
* ``full``: EMA smoothing and a prototype bank of two custom actions (5 examples each). With
  custom actions the engine encodes every trained modality, not only the classifier's inputs.

Prints a table, the goals, then one JSON object as the last line.

Camera mode (``--camera FILE [--camera-size 640x480|native] [--pose-rate 15]``): the live path
with pose on colour video. The video source is a real looping ``CameraSource`` on a copy of
``FILE`` scaled and centre-cropped to ``--camera-size`` at 30 fps (written to a temporary folder,
deleted at the end; ``native`` plays the file as it is); audio and IMU are the synthetic replay
sources. Both phases run twice in one invocation: without pose, then with a ``PoseStream`` on the
camera (at most ``--pose-rate`` estimates/s). The engines get the sources as mmg-live gives them,
so a depth-trained video encoder (``--checkpoint``) leaves colour video idle. Each phase also
reports the camera's frames/s, the pose stream's rate, skipped frames, person-found share and
estimator p50, and CPU shares (CPU seconds / wall seconds, 1.0 = one core) of the process, the
camera reader, the ``pose-<name>`` thread (``/proc/self/task/<native_id>/stat``) and MediaPipe's
graph threads, which do the estimating while the pose thread waits. Goals (full phase of the pose
run, printed next to the run without pose): pose stream >= 15 Hz, >= 10 predictions/s,
window->prediction p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", category=FutureWarning)

from devices.base import MODALITIES, host_now  # noqa: E402
from devices.replay import ReplayClock, ReplaySource, open_replay  # noqa: E402
from mmg_live.live.prediction import LATENCY_STAGES  # noqa: E402

#: The issue's goals: (key in the results, label, limit, "max" or "min").
GOALS = (
    ("age_ms_p95", "window->prediction p95", 100.0, "max", "ms"),
    ("predictions_per_s", "predictions per second", 10.0, "min", "/s"),
    ("enrol_ms", "enrolment of a 5-example action", 500.0, "max", "ms"),
    ("rss_growth_mb", "RSS growth over the full phase", 20.0, "max", "MiB"),
)
ENROL_EXAMPLES = 5


def rss_mb() -> float:
    """Resident set size now, in MiB (from /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- sources ------------------------------------------------------------------------------------


def synthetic_frame_shape(specs) -> tuple[int, int, int]:
    """A camera-like frame big enough for the config's video input (crop/resize still run)."""
    video = specs["video"]
    channels = 1 if video.color == "gray" else 3
    if video.size <= 120:
        return 120, 160, channels
    side = video.size + 32  # e.g. 256x256 for 224² RGB
    return side, side, channels


def synthetic_sources(specs, span: float = 10.0) -> list[ReplaySource]:
    """Three looping sources on one clock (deterministic content) shaped for ``specs``.

    Video at 30 fps (a moving bright block), audio at the spec's sample rate in 512-sample
    blocks (a tone plus noise), IMU at the spec's rate. Looping continues the timestamps, so
    ``span`` may be shorter than a window.
    """
    rng = np.random.default_rng(0)
    v_rate, a_rate, i_rate = 30.0, float(specs["audio"].sample_rate), float(specs["imu"].rate)
    clock = ReplayClock(0.0, span, 1.0, loop_gap=1.0 / max(v_rate, i_rate))
    nv, na, ni = int(v_rate * span), int(a_rate * span), int(i_rate * span)
    h, w, c = synthetic_frame_shape(specs)
    frames = np.zeros((nv, h, w, c), np.uint8)
    block = max(8, h // 4)
    for i in range(nv):
        x = int((w - block) * (0.5 + 0.5 * np.sin(i / 20)))
        frames[i, h // 4:h // 4 + 2 * block, x:x + block] = 180
    ta = np.arange(na) / a_rate
    audio = (0.1 * np.sin(2 * np.pi * 300 * ta) + rng.normal(0, 0.01, na)).astype(np.float32)[:, None]
    ti = np.arange(ni) / i_rate
    imu = np.stack([np.sin(ti), np.cos(ti), np.ones_like(ti), 20 * np.sin(3 * ti), 0 * ti, 5 * np.cos(ti)],
                   1).astype(np.float32)
    blocks = [512] * (na // 512) + ([na % 512] if na % 512 else [])
    return [
        ReplaySource("video", "video", np.arange(nv) / v_rate, frames, clock=clock, loop=True, nominal_rate=v_rate),
        ReplaySource("audio", "audio", ta, audio, blocks=blocks, clock=clock, loop=True, nominal_rate=a_rate),
        ReplaySource("imu", "imu", ti, imu, clock=clock, loop=True, nominal_rate=i_rate),
    ]


def benchmark_sources(args: argparse.Namespace, specs) -> tuple[list[ReplaySource], str]:
    """The sources asked for on the command line and a one-line description of them."""
    if args.demo:
        from mmg_live.demo import demo_session

        folder = demo_session()
        return open_replay(folder, speed=1.0, loop=True), f"demo session {folder} (looping)"
    if args.replay:
        return open_replay(args.replay, speed=1.0, loop=True), f"replay {args.replay} (looping)"
    return synthetic_sources(specs), "synthetic sources " + "x".join(map(str, synthetic_frame_shape(specs)))


# ---- model --------------------------------------------------------------------------------------


def load_model(args: argparse.Namespace):
    """``--checkpoint`` (a path or ``default``) with real weights, else ``--config`` built untrained
    and marked trained on every modality (encoders, fusion and classifier)."""
    if args.checkpoint:
        from mmg_live.checkpoint import load_checkpoint

        path = args.checkpoint
        if path == "default":
            from mmg_live.assets import default_checkpoint_path

            path = str(default_checkpoint_path())
        model, _info = load_checkpoint(path, "cpu")
        if args.config and args.config != model.config.name:
            raise ValueError(f"--config {args.config} but {path} holds a {model.config.name!r} model")
        return model, path
    from mmg_live.models.mmg import build_model

    torch.manual_seed(0)
    model = build_model(args.config or "lite", [f"class{i}" for i in range(27)])
    mods = list(model.modalities)
    model.trained.encoders, model.trained.fusion, model.trained.classifier = list(mods), list(mods), True
    return model, f"untrained {model.config.name} marked trained on {'+'.join(mods)}"


# ---- phases -------------------------------------------------------------------------------------


def wait_for_windows(buffers, specs, expected: int, timeout: float = 60.0) -> float:
    """Wait until every stream's buffer covers its modality's window; returns the seconds waited."""
    t0 = host_now()
    while host_now() - t0 < timeout:
        sync = buffers.synchronizer
        t = sync.latest_time()
        if t is not None and len(sync.buffers) >= expected and all(
                (b.oldest_time() or t) <= t - specs[b.modality].window_s for b in sync.buffers.values()):
            break
        time.sleep(0.1)
    return host_now() - t0


def warm_up(model, buffers, streams, device: str, steps: int = 3) -> float:
    """A few windows through a throwaway engine (lazy CUDA/cuDNN init, first-call allocations)."""
    from mmg_live.live.engine import InferenceEngine

    engine = InferenceEngine(model, buffers.synchronizer, streams, smoothing="none", device=device)
    t0 = time.perf_counter()
    for _ in range(steps):
        engine.step()
        time.sleep(0.1)
    return time.perf_counter() - t0


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) rounded to 0.01, or (nan, nan) for no values."""
    if not len(values):
        return float("nan"), float("nan")
    arr = np.asarray(values, np.float64)
    return round(float(np.percentile(arr, 50)), 2), round(float(np.percentile(arr, 95)), 2)




def sample_of(pred) -> tuple:
    """What the benchmark keeps of a prediction: age, total and stage latencies (ms), modalities.

    A compact tuple, not the Prediction itself: keeping 6000 Predictions (dicts of top-k,
    latencies, coverage) would itself grow the RSS the benchmark measures by ~20 MB.
    """
    return ((pred.emitted - pred.t) * 1e3, pred.latency_ms["total"],
            *(pred.latency_ms[s] for s in LATENCY_STAGES), "+".join(pred.modalities))


def summarise(name: str, preds: list, stats: dict, elapsed: float, rss: list[tuple[float, float]],
              smoothing: str, bank) -> dict[str, Any]:
    """One phase's numbers from its prediction samples, the engine's stats and the RSS samples."""
    age = [p[0] for p in preds]
    total = [p[1] for p in preds]
    stages = {s: percentiles([p[2 + i] for p in preds])[0] for i, s in enumerate(LATENCY_STAGES)}
    subsets: dict[str, int] = {}
    for p in preds:
        subsets[p[-1]] = subsets.get(p[-1], 0) + 1
    (a50, a95), (t50, t95) = percentiles(age), percentiles(total)
    return {
        "phase": name, "seconds": round(elapsed, 2), "predictions": len(preds),
        "predictions_per_s": round(len(preds) / elapsed, 2), "windows": stats["windows"], "skipped": stats["skipped"],
        "idle_windows": stats["idle_windows"], "errors": stats["errors"], "last_error": stats["last_error"],
        "memory_trims": stats["memory_trims"], "modalities": subsets, "age_ms_p50": a50, "age_ms_p95": a95,
        "total_ms_p50": t50, "total_ms_p95": t95,
        "stage_ms_p50": stages, "rss_mb_start": rss[0][1], "rss_mb_end": rss[-1][1],
        "rss_mb_max": max(v for _, v in rss), "rss_mb_samples": rss,
        "rss_growth_mb": round(rss[-1][1] - rss[0][1], 1),
        "smoothing": smoothing, "custom_actions": 0 if bank is None else len(bank),
    }


def run_phase(name: str, engine, seconds: float, rss_every: float = 10.0, probe=None) -> dict[str, Any]:
    """Run ``engine`` for ``seconds``, sampling RSS every ``rss_every`` s; returns the summary.

    ``probe`` (a :class:`ResourceProbe`, camera mode) measures CPU shares and the camera's and pose
    stream's rates over the phase; its numbers join the summary."""
    preds: list = []
    lock = threading.Lock()

    def collect(p) -> None:
        sample = sample_of(p)
        with lock:
            preds.append(sample)

    engine.add_listener(collect)
    rss = [(0.0, round(rss_mb(), 1))]
    t0 = host_now()
    if probe is not None:
        probe.begin()
    engine.start()
    next_sample = rss_every
    while (now := host_now() - t0) < seconds:
        time.sleep(min(0.5, seconds - now))
        if host_now() - t0 >= next_sample:
            rss.append((round(host_now() - t0, 1), round(rss_mb(), 1)))
            next_sample += rss_every
    elapsed = host_now() - t0
    measured = probe.end() if probe is not None else {}
    engine.stop()
    rss.append((round(elapsed, 1), round(rss_mb(), 1)))
    with lock:
        got = list(preds)
    smoothing = "ema" if type(engine.smoother).__name__ == "EmaSmoother" else "none"
    return {**summarise(name, got, engine.stats(), elapsed, rss, smoothing, engine.prototypes), **measured}


def capture(engine, timeout: float = 30.0, never: frozenset[str] = frozenset()) -> tuple[dict, float]:
    """One window from ``engine.capture_inputs``, waiting (up to ``timeout`` s) for one in which
    every trained stream is live (a replayed session has pauses between its trials), except the
    modalities in ``never`` (a colour camera never feeds a depth-trained video encoder)."""
    wanted = set(engine.trained_modalities()) - never
    deadline = host_now() + timeout
    while True:
        tensors, problems, t_end = engine.capture_inputs()
        if tensors and (set(tensors) >= wanted or host_now() > deadline):
            return tensors, t_end
        if host_now() > deadline:
            raise RuntimeError(f"no usable enrolment window in {timeout:g} s: {problems}")
        time.sleep(0.1)


def enrol(engine, bank, name: str, examples: int = ENROL_EXAMPLES, gap: float = 0.2,
          never: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Capture ``examples`` windows ``gap`` s apart through ``engine.capture_inputs`` (as the GUI's
    recording dialog does), then time enrolling them as action ``name`` (its "Finish")."""
    captured = []
    for _ in range(examples):
        captured.append(capture(engine, never=never))
        time.sleep(gap)
    t0 = time.perf_counter()
    bank.add_examples(name, [tensors for tensors, _ in captured],
                      [{"source": "benchmark", "example": i, "t_end": t_end} for i, (_, t_end) in enumerate(captured)])
    seconds = time.perf_counter() - t0
    mods = sorted({m for tensors, _ in captured for m in tensors})
    return {"name": name, "examples": examples, "modalities": mods, "ms": round(seconds * 1e3, 1)}


# ---- camera mode (--camera FILE) ----------------------------------------------------------------

#: The issue's goals for the live path with pose: (key in a phase summary, label, limit, kind, unit).
CAMERA_GOALS = (
    ("pose_rate_hz", "pose stream rate", 15.0, "min", "Hz"),
    ("predictions_per_s", "predictions per second", 10.0, "min", "/s"),
    ("age_ms_p95", "window->prediction p95", 100.0, "max", "ms"),
)
CAMERA_FPS = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_size(text: str) -> tuple[int, int] | None:
    """``"640x480"`` → ``(640, 480)``; ``"native"`` → None (play the file as it is)."""
    if text == "native":
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT or 'native', got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"frame size {text!r} is too small")
    return w, h


def write_camera_copy(path: str, size: tuple[int, int], folder: str, fps: float = CAMERA_FPS) -> tuple[str, str]:
    """A copy of the video ``path`` in ``folder``, every frame scaled to cover ``size`` (aspect kept)
    and centre-cropped to it, written at ``fps``; returns ``(file, description)``."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SystemExit(f"--camera {path}: OpenCV cannot read it")
    src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    w, h = size
    out = str(Path(folder) / f"camera_{w}x{h}.mp4")
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        cap.release()
        raise SystemExit(f"cannot write {out} (OpenCV has no mp4v encoder)")
    frames, src_shape = 0, None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            fh, fw = frame.shape[:2]
            src_shape = src_shape or (fw, fh)
            scale = max(w / fw, h / fh)
            sw, sh = max(w, round(fw * scale)), max(h, round(fh * scale))
            big = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
            x, y = (sw - w) // 2, (sh - h) // 2
            writer.write(np.ascontiguousarray(big[y:y + h, x:x + w]))
            frames += 1
    finally:
        cap.release()
        writer.release()
    if not frames:
        raise SystemExit(f"--camera {path}: no frames")
    desc = (f"{Path(path).name} ({src_shape[0]}x{src_shape[1]} at {src_fps:.2f} fps) scaled and centre-cropped to "
            f"{w}x{h}, {frames} frames at {fps:g} fps")
    return out, desc


def task_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every thread of this process: ``{native id: (comm, seconds)}``."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, utime 14, stime 15
        out[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def process_cpu_s() -> float:
    """CPU seconds (user + system) of the whole process, every thread included."""
    t = os.times()
    return t.user + t.system


class ResourceProbe:
    """Per phase of a camera run: CPU shares (CPU seconds / wall seconds; 1.0 = one core) of the
    process, the camera's reader (+ FFmpeg decoder threads), the pose stream's own thread and
    MediaPipe's graph threads (where BlazePose actually runs: the pose thread mostly waits for
    them), and the camera's and pose stream's rates.

    Threads are found by their Python names (``camera:<name>``, ``pose-<name>``) through their
    ``native_id``, MediaPipe's and FFmpeg's by the kernel's thread name (``mediapipe/…``, ``av:…``).
    """

    def __init__(self, camera, pose=None) -> None:
        self.camera, self.pose = camera, pose
        self._lock = threading.Lock()
        self._estimates: list[tuple[float, bool]] | None = None
        if pose is not None:
            pose.subscribe(self._on_pose)

    def _on_pose(self, chunk) -> None:
        with self._lock:
            if self._estimates is not None:
                self._estimates.append((host_now(), bool(np.isfinite(chunk.data[-1, 0, 0]))))

    def _groups(self) -> dict[int, str]:
        """Which group each thread of the process belongs to now."""
        names = {th.native_id: th.name for th in threading.enumerate() if th.native_id is not None}
        groups = {}
        for tid, (comm, _) in task_cpu().items():
            name = names.get(tid, "")
            if name == f"camera:{self.camera.name}" or comm.startswith("av:"):
                groups[tid] = "camera"
            elif self.pose is not None and name == f"pose-{self.pose.name}":
                groups[tid] = "pose_thread"
            elif comm.startswith("mediapipe"):
                groups[tid] = "pose_graph"
        return groups

    def begin(self) -> None:
        self._t0, self._cpu0, self._tasks0 = host_now(), process_cpu_s(), task_cpu()
        self._camera0 = self.camera.health()
        if self.pose is not None:
            self._pose0 = self.pose.health()
            with self._lock:
                self._estimates = []

    def end(self) -> dict[str, Any]:
        wall = host_now() - self._t0
        cpu, tasks, groups = process_cpu_s(), task_cpu(), self._groups()
        spent = {"camera": 0.0, "pose_thread": 0.0, "pose_graph": 0.0}
        for tid, group in groups.items():
            if tid in tasks:
                spent[group] += tasks[tid][1] - self._tasks0.get(tid, ("", 0.0))[1]
        cam = self.camera.health()
        out: dict[str, Any] = {
            "process_cpu_share": round((cpu - self._cpu0) / wall, 3),
            "camera_cpu_share": round(spent["camera"] / wall, 3),
            "camera_frames_per_s": round((cam.samples - self._camera0.samples) / wall, 2),
            "camera_dropped": cam.dropped - self._camera0.dropped,
        }
        if self.pose is None:
            return out
        with self._lock:
            estimates, self._estimates = self._estimates or [], None
        h = self.pose.health()
        times = [t for t, _ in estimates]
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        compute = h.extra.get("compute_ms_p50")
        return {
            **out,
            "pose_thread_cpu_share": round(spent["pose_thread"] / wall, 3),
            "pose_graph_cpu_share": round(spent["pose_graph"] / wall, 3),
            "pose_cpu_share": round((spent["pose_thread"] + spent["pose_graph"]) / wall, 3),
            "pose_estimates": len(estimates), "pose_rate_hz": round(rate, 2),
            "pose_health_rate_hz": round(h.measured_rate or 0.0, 2),
            "pose_skipped_frames": h.dropped - self._pose0.dropped,
            "person_found_share": round(float(np.mean([f for _, f in estimates])), 3) if estimates else None,
            "pose_compute_ms_p50": None if compute is None else round(float(compute), 1),
            "pose_error": h.error,
        }


def camera_run(args: argparse.Namespace, model, device: str, camera_file: str, camera_fps: float | None,
               with_pose: bool) -> dict[str, Any]:
    """Both phases on a looping ``CameraSource`` + synthetic audio and IMU, with or without a
    ``PoseStream`` on the camera."""
    from devices.camera import CameraSource

    replay = [s for s in synthetic_sources(model.config.specs) if s.modality != "video"]
    camera = CameraSource(camera_file, name="camera", loop=True, fps=camera_fps, video_kind="colour")
    pose = None
    if with_pose:
        from mmg_live.pose.stream import PoseStream

        pose = PoseStream(camera, rate_hz=args.pose_rate)
    probe = ResourceProbe(camera, pose)
    sources = ([pose] if pose is not None else []) + [camera, *replay]  # the pose thread first: no frame missed
    trained_on = model.config.specs.video.trained_on
    never = frozenset({"video"}) if trained_on and trained_on != "colour" else frozenset()
    run = measure(args, model, device, sources, engine_sees_sources=True, probe=probe, never=never)
    run["pose"] = with_pose
    return run


def check_camera_goals(pose_full: dict[str, Any], no_pose_full: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with the pose run's value (full phase), whether it is met, and the no-pose run's value."""
    out = []
    for key, label, limit, kind, unit in CAMERA_GOALS:
        value = pose_full.get(key)
        ok = value is not None and bool(np.isfinite(value)) and (value <= limit if kind == "max" else value >= limit)
        out.append({"goal": key, "label": label, "limit": limit, "kind": kind, "unit": unit, "value": value,
                    "pass": ok, "no_pose_value": no_pose_full.get(key)})
    return out


def print_camera_report(header: str, runs: dict[str, dict], goals: list[dict], notes: list[str]) -> None:
    """The table of both runs' phases, the enrolments, the goals with PASS/MISS and notes."""
    phases = [(f"{label}: {phase}", runs[key][phase]) for key, label in (("no_pose", "no pose"), ("pose", "pose"))
              for phase in ("baseline", "full")]

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def row(label: str, *keys: str) -> tuple[str, list[str]]:
        return label, [" / ".join(fmt(p.get(k)) for k in keys) for _, p in phases]

    rows = [
        row("smoothing / custom actions", "smoothing", "custom_actions"),
        row("seconds", "seconds"),
        row("predictions / s", "predictions_per_s"),
        row("windows / skipped / idle", "windows", "skipped", "idle_windows"),
        row("errors", "errors"),
        row("window->prediction p50 / p95 ms", "age_ms_p50", "age_ms_p95"),
        row("processing p50 / p95 ms", "total_ms_p50", "total_ms_p95"),
        ("  encode+fuse / preprocess p50 ms",
         [f"{p['stage_ms_p50']['encode_fuse']} / {p['stage_ms_p50']['preprocess']}" for _, p in phases]),
        row("camera frames/s / dropped", "camera_frames_per_s", "camera_dropped"),
        row("pose estimates/s (health)", "pose_rate_hz", "pose_health_rate_hz"),
        row("pose skipped frames", "pose_skipped_frames"),
        row("person found share", "person_found_share"),
        row("pose estimator p50 ms", "pose_compute_ms_p50"),
        row("CPU share: process", "process_cpu_share"),
        row("  camera reader+decoder", "camera_cpu_share"),
        row("  pose thread / MediaPipe graph", "pose_thread_cpu_share", "pose_graph_cpu_share"),
        row("  pose total", "pose_cpu_share"),
        row("RSS start / end MiB", "rss_mb_start", "rss_mb_end"),
    ]
    print(header)
    print(f"  {'':<34}" + "".join(f" {name:>20}" for name, _ in phases))
    for label, values in rows:
        print(f"  {label:<34}" + "".join(f" {v:>20}" for v in values))
    for name, phase in phases:
        print(f"  modalities encoded ({name}): {format_modalities(phase['modalities'])}")
        if phase["last_error"]:
            print(f"  last error ({name}): {phase['last_error']}")
        if phase.get("pose_error"):
            print(f"  pose stream error ({name}): {phase['pose_error']}")
    for key, label in (("no_pose", "no pose"), ("pose", "pose")):
        for e in runs[key]["enrolments"]:
            print(f"  enrolment of {e['name']!r} ({label}; {e['examples']} examples, {'+'.join(e['modalities'])}, "
                  f"every subset): {e['ms']:.0f} ms")
    print("goals (full phase of the pose run; the run without pose alongside):")
    for g in goals:
        op = "<=" if g["kind"] == "max" else ">="
        print(f"  {'PASS' if g['pass'] else 'MISS'}  {g['label']:<26} {fmt(g['value']):>9} {g['unit']:<3} "
              f"(goal {op} {g['limit']:g})   without pose: {fmt(g['no_pose_value'])}")
    pose_full, no_pose_full = runs["pose"]["full"], runs["no_pose"]["full"]
    print(f"  info  pose CPU share (full phase): thread {fmt(pose_full.get('pose_thread_cpu_share'))}, "
          f"with MediaPipe's graph threads {fmt(pose_full.get('pose_cpu_share'))}; process "
          f"{fmt(pose_full['process_cpu_share'])} vs {fmt(no_pose_full['process_cpu_share'])} without pose")
    for note in notes:
        print(f"note: {note}")


def camera_main(args: argparse.Namespace, model, model_desc: str, device: str, arenas_capped: bool,
                rss_start: float) -> None:
    """``--camera FILE``: the same measurement without pose, then with a ``PoseStream`` on the camera."""
    import tempfile

    from mmg_live.prototypes import usable_modalities

    with tempfile.TemporaryDirectory(prefix="mmg-bench-camera-") as folder:
        if args.camera_size is None:
            camera_file, camera_fps = args.camera, None
            camera_desc = f"{Path(args.camera).name} as it is"
        else:
            camera_file, camera_desc = write_camera_copy(args.camera, args.camera_size, folder)
            camera_fps = CAMERA_FPS
        runs = {"no_pose": camera_run(args, model, device, camera_file, camera_fps, with_pose=False),
                "pose": camera_run(args, model, device, camera_file, camera_fps, with_pose=True)}
    goals = check_camera_goals(runs["pose"]["full"], runs["no_pose"]["full"])
    notes = []
    for key, run in runs.items():
        missing = [m for m in usable_modalities(model)
                   if m in run["streams"] and not any(m in k.split("+") for k in run["full"]["modalities"])]
        if missing:
            notes.append(f"trained modalities never encoded in the full phase of the {key.replace('_', ' ')} run: "
                         f"{missing} (e.g. a depth-trained video encoder leaves colour video idle)")
    plain = runs["no_pose"]["full"]["stage_ms_p50"]
    if plain["preprocess"] > plain["encode_fuse"]:
        encoded = runs["no_pose"]["full"].get("modalities", {})
        causes = []
        if any("audio" in k.split("+") for k in encoded) and model.config.specs.audio.frontend == "speech_embedding":
            causes.append("audio preprocessing runs the frozen speech embedding (an ONNX ResNet-50)")
        if any("video" in k.split("+") for k in encoded):
            causes.append("the video path reads the camera's full-size frames")
        notes.append(f"without pose, preprocessing (p50 {plain['preprocess']} ms) costs more than encoding and "
                     f"fusing (p50 {plain['encode_fuse']} ms)" + (": " + "; ".join(causes) if causes else ""))
    if "pose" not in usable_modalities(model):
        notes.append("the model has no trained pose encoder: the pose run estimates pose but never encodes it")
    if args.pose_rate <= CAMERA_GOALS[0][2]:
        notes.append(f"the pose stream is capped at --pose-rate {args.pose_rate:g} Hz, so the rate goal "
                     f"(>= {CAMERA_GOALS[0][2]:g} Hz) leaves no margin")
    notes.append("pose thread CPU: the pose-<name> thread only (it mostly waits for MediaPipe's graph threads, "
                 "which run BlazePose); 'pose total' adds the graph threads")
    source_desc = (f"camera {camera_desc} (looping, colour) + synthetic audio and IMU; "
                   f"pose at most {args.pose_rate:g} Hz in the pose run")
    header = (f"live engine with a camera, {model.config.name} config ({model_desc}), device {device}, "
              f"stride {args.stride} s, torch threads {torch.get_num_threads()}, "
              f"malloc arenas {'capped at 2' if arenas_capped else 'not capped'}, "
              f"heap trim every {args.trim_memory_s:g} s, {source_desc}; waited "
              + ", ".join(f"{runs[k]['waited_s']:.1f} s" for k in runs) + " for full windows, warm-up "
              + ", ".join(f"{runs[k]['warm_up_s']:.1f} s" for k in runs) + " (no pose, pose)")
    print_camera_report(header, runs, goals, notes)
    print(json.dumps({
        "mode": "camera", "config": model.config.name, "model": model_desc, "device": device,
        "stride_s": args.stride, "threads": torch.get_num_threads(), "malloc_arenas_capped": arenas_capped,
        "trim_memory_s": args.trim_memory_s, "source": source_desc, "camera": camera_desc,
        "camera_size": None if args.camera_size is None else "x".join(map(str, args.camera_size)),
        "pose_rate_limit_hz": args.pose_rate, "rss_mb_process_start": round(rss_start, 1),
        "goals": goals, "all_goals_met": all(g["pass"] for g in goals), "notes": notes, "runs": runs,
    }))



# ---- report -------------------------------------------------------------------------------------


def check_goals(full: dict[str, Any], enrol_ms: float) -> list[dict[str, Any]]:
    """Each goal with the measured value and whether it is met."""
    values = {"age_ms_p95": full["age_ms_p95"], "predictions_per_s": full["predictions_per_s"],
              "enrol_ms": enrol_ms, "rss_growth_mb": full["rss_growth_mb"]}
    out = []
    for key, label, limit, kind, unit in GOALS:
        value = values[key]
        ok = bool(np.isfinite(value)) and (value <= limit if kind == "max" else value >= limit)
        out.append({"goal": key, "label": label, "limit": limit, "kind": kind, "unit": unit, "value": value,
                    "pass": ok})
    return out


def format_modalities(subsets: dict[str, int]) -> str:
    """``video+audio+imu x598`` style, most frequent first."""
    return ", ".join(f"{k or '-'} x{n}" for k, n in sorted(subsets.items(), key=lambda kv: -kv[1])) or "none"


def print_report(header: str, baseline: dict, full: dict, enrolments: list[dict], goals: list[dict],
                 notes: list[str]) -> None:
    """The table of both phases, the enrolments, the goals with PASS/MISS and notes."""
    def pair(key: str) -> tuple[str, str]:
        return str(baseline[key]), str(full[key])

    rows = [
        ("smoothing / custom actions", ("none / 0", f"{full['smoothing']} / {full['custom_actions']}")),
        ("seconds", pair("seconds")),
        ("predictions / s", pair("predictions_per_s")),
        ("windows / skipped / idle",
         tuple(f"{p['windows']} / {p['skipped']} / {p['idle_windows']}" for p in (baseline, full))),
        ("errors", pair("errors")),
        ("window->prediction p50 / p95 ms", tuple(f"{p['age_ms_p50']} / {p['age_ms_p95']}" for p in (baseline, full))),
        ("processing p50 / p95 ms", tuple(f"{p['total_ms_p50']} / {p['total_ms_p95']}" for p in (baseline, full))),
        ("  encode+fuse p50 ms", tuple(str(p["stage_ms_p50"]["encode_fuse"]) for p in (baseline, full))),
        ("  preprocess p50 ms", tuple(str(p["stage_ms_p50"]["preprocess"]) for p in (baseline, full))),
        ("RSS start / end MiB", tuple(f"{p['rss_mb_start']} / {p['rss_mb_end']}" for p in (baseline, full))),
        ("  RSS max MiB / heap trims", tuple(f"{p['rss_mb_max']} / {p['memory_trims']}" for p in (baseline, full))),
    ]
    print(header)
    print(f"  {'':<34} {'baseline':>24} {'full':>24}")
    for label, (a, b) in rows:
        print(f"  {label:<34} {a:>24} {b:>24}")
    for phase in (baseline, full):
        print(f"  modalities encoded ({phase['phase']}): {format_modalities(phase['modalities'])}")
        if phase["last_error"]:
            print(f"  last error ({phase['phase']}): {phase['last_error']}")
    for e in enrolments:
        print(f"  enrolment of {e['name']!r} ({e['examples']} examples, {'+'.join(e['modalities'])}, "
              f"every subset): {e['ms']:.0f} ms")
    print("goals (full phase):")
    for g in goals:
        op = "<=" if g["kind"] == "max" else ">="
        print(f"  {'PASS' if g['pass'] else 'MISS'}  {g['label']:<34} {g['value']:>9} {g['unit']:<4} "
              f"(goal {op} {g['limit']:g})")
    for note in notes:
        print(f"note: {note}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of the full phase (default 60; 600 = 10 min)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0,
                        help="length of the baseline phase (default 20)")
    parser.add_argument("--stride", type=float, default=0.08,
                        help="engine stride in seconds (default 0.08: up to 12.5 predictions/s; 0.1 caps at "
                             "exactly 10, so one skipped tick misses the 10/s goal)")
    parser.add_argument("--config", choices=("lite", "paper"), default=None,
                        help="model config when no --checkpoint (default lite)")
    parser.add_argument("--checkpoint", metavar="PATH|default", help="load real weights (default: the shipped model)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="compute device (default cpu)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--demo", action="store_true", help="the built-in demo session (UTD-MHAD + FSDD), looping")
    src.add_argument("--replay", metavar="DIR", help="a recorded session (looping)")
    src.add_argument("--camera", metavar="FILE",
                     help="a colour video file played by a looping CameraSource (+ synthetic audio and IMU), "
                          "measured without and with a pose stream on it")
    parser.add_argument("--camera-size", type=parse_size, default=(640, 480), metavar="WxH|native",
                        help="with --camera: play a temporary copy scaled and centre-cropped to this size at "
                             f"{CAMERA_FPS:g} fps (default 640x480); 'native': the file as it is")
    parser.add_argument("--pose-rate", type=float, default=15.0, metavar="HZ",
                        help="with --camera: the pose stream's most estimates per second (default 15)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: as mmg-live, one fewer than torch's default)")
    parser.add_argument("--trim-memory-s", type=float, default=10.0,
                        help="the engine's heap trim period in seconds (default 10, as mmg-live; 0: never)")
    args = parser.parse_args(argv)
    if args.stride <= 0 or args.seconds <= 0 or args.baseline_seconds <= 0:
        parser.error("--stride, --seconds and --baseline-seconds must be > 0")
    if args.pose_rate <= 0:
        parser.error("--pose-rate must be > 0")
    if args.camera and not Path(args.camera).is_file():
        parser.error(f"--camera {args.camera}: no such file")
    return args


def measure(args: argparse.Namespace, model, device: str, sources: Sequence, engine_sees_sources: bool = False,
            probe=None, never: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Both phases on ``sources`` (started here, stopped at the end): wait for full windows, warm
    up, ``baseline``, enrol two custom actions, ``full``. With ``engine_sees_sources`` the engines
    get the sources as mmg-live gives them (their health: device errors, ended streams, the
    camera's video kind); ``probe`` measures each phase's CPU shares and stream rates."""
    from mmg_live.live.engine import InferenceEngine
    from mmg_live.live.source_buffers import SourceBuffers
    from mmg_live.prototypes import PrototypeBank

    specs = model.config.specs
    buffers = SourceBuffers.for_model(model)  # what mmg-live --headless allocates
    streams = buffers.attach(sources)
    engine_sources = buffers.sources if engine_sees_sources else None
    for s in sources:
        s.start()
    try:
        waited = wait_for_windows(buffers, specs, len(streams))
        warm_s = warm_up(model, buffers, streams, device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base_engine = InferenceEngine(model, buffers.synchronizer, streams, stride_s=args.stride, smoothing="none",
                                      device=device, trim_memory_s=args.trim_memory_s, sources=engine_sources)
        base_engine.warm_up()  # what its worker would do first: not part of the measured phase
        baseline = run_phase("baseline", base_engine, args.baseline_seconds, probe=probe)
        bank = PrototypeBank(model)
        engine = InferenceEngine(model, buffers.synchronizer, streams, stride_s=args.stride, smoothing="ema",
                                 device=device, prototypes=bank, trim_memory_s=args.trim_memory_s,
                                 sources=engine_sources)
        enrolments = [enrol(engine, bank, "custom_a", never=never), enrol(engine, bank, "custom_b", never=never)]
        engine.warm_up()  # with the custom actions enrolled: every subset through the bank too
        full = run_phase("full", engine, args.seconds, probe=probe)
    finally:
        for s in sources:
            s.stop()
    return {"streams": streams, "waited_s": round(waited, 2), "warm_up_s": round(warm_s, 2),
            "enrolments": enrolments, "baseline": baseline, "full": full}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from mmg_live.live.memory import limit_malloc_arenas

    from mmg_live.live.threads import set_inference_threads

    arenas_capped = limit_malloc_arenas()  # as mmg-live does, before any thread starts
    set_inference_threads(args.threads)  # as mmg-live does
    from mmg_live.models.mmg import select_device
    from mmg_live.prototypes import usable_modalities

    device = str(select_device(args.device))
    rss_start = rss_mb()
    model, model_desc = load_model(args)
    if args.camera:
        camera_main(args, model, model_desc, device, arenas_capped, rss_start)
        return
    specs = model.config.specs
    sources, source_desc = benchmark_sources(args, specs)
    run = measure(args, model, device, sources)
    streams, waited, warm_s = run["streams"], run["waited_s"], run["warm_up_s"]
    baseline, full, enrolments = run["baseline"], run["full"], run["enrolments"]

    enrol_ms = max(e["ms"] for e in enrolments)
    goals = check_goals(full, enrol_ms)
    gpu_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None
    notes = []
    if args.seconds < 600:
        notes.append(f"RSS growth over {args.seconds:g} s; the issue's goal is over 10 minutes (--seconds 600)")
    missing = [m for m in usable_modalities(model)
               if m in streams and not any(m in k.split("+") for k in full["modalities"])]
    if set(MODALITIES) - set(streams):
        notes.append(f"no {'/'.join(sorted(set(MODALITIES) - set(streams)))} stream in the sources")
    if full["idle_windows"]:
        notes.append(f"{full['idle_windows']} idle windows in the full phase (no usable modality, e.g. the pauses "
                     f"between replayed trials); predictions/s counts only emitted predictions")
    if missing:
        notes.append(f"trained modalities never encoded in the full phase: {missing}")
    header = (f"live engine, {model.config.name} config ({model_desc}), device {device}, stride {args.stride} s, "
              f"torch threads {torch.get_num_threads()}, "
              f"malloc arenas {'capped at 2' if arenas_capped else 'not capped'}, "
              f"heap trim every {args.trim_memory_s:g} s, "
              f"{source_desc}; waited {waited:.1f} s for full windows, "
              f"warm-up {warm_s:.1f} s" + (f", peak GPU memory {gpu_mb} MiB" if gpu_mb is not None else ""))
    print_report(header, baseline, full, enrolments, goals, notes)
    print(json.dumps({
        "config": model.config.name, "model": model_desc, "device": device, "stride_s": args.stride,
        "threads": torch.get_num_threads(), "malloc_arenas_capped": arenas_capped,
        "trim_memory_s": args.trim_memory_s, "source": source_desc, "rss_mb_process_start": round(rss_start, 1),
        "enrol_5_examples_ms": enrol_ms, "enrolments": enrolments, "gpu_peak_mb": gpu_mb,
        "goals": goals, "all_goals_met": all(g["pass"] for g in goals), "baseline": baseline, "full": full,
    }))


if __name__ == "__main__":
    main()
