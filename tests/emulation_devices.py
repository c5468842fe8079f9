"""Device emulation for tests: a PulseAudio null sink (microphone), a socat pty pair
(serial port) with a paced line writer, and lossless video files (camera).

Every service is started here, waited for with a deadline, and stopped by PID. Recipes as in
/work/shared/TESTING.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from devices.base import Chunk


class Collector:
    """A chunk subscriber that keeps every chunk and lets a test wait for the first ``n``."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.cond = threading.Condition()

    def __call__(self, chunk: Chunk) -> None:
        with self.cond:
            self.chunks.append(chunk)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 5.0) -> bool:
        """Whether ``n`` chunks arrived within ``timeout`` seconds."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.chunks) >= n, timeout)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll ``cond`` until true; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")


def _stop_process(proc: subprocess.Popen, timeout: float = 3.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (the Makefile's system-deps installs it)")


# ---------------------------------------------------------------- PulseAudio -------------
class PulseServer:
    """A private PulseAudio daemon with a null sink ``vsink`` whose monitor is the default
    input; a low-latency ``parec`` stays attached so new recorders get blocks at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "pulse.sock"
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(root / "xdg"), HOME=str(root / "home"),
                        PULSE_SERVER=f"unix:{self.socket}", PULSE_COOKIE=str(root / "home" / "cookie"))
        self.daemon: subprocess.Popen | None = None
        self.reader: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        for d in ("xdg", "home"):
            (self.root / d).mkdir(mode=0o700, exist_ok=True)
        script = self.root / "pa.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            "load-module module-null-sink sink_name=vsink rate=48000 channels=1\n"
            "set-default-sink vsink\nset-default-source vsink.monitor\n"
        )
        self.daemon = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--system=false", "--exit-idle-time=-1", "-n", "-F", str(script),
             f"--log-target=file:{self.root / 'pa.log'}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.daemon.poll() is not None or self._ready(), timeout, "pulseaudio to answer", 0.1)
        if self.daemon.poll() is not None:
            raise RuntimeError(f"pulseaudio exited with {self.daemon.returncode}; see {self.root / 'pa.log'}")
        self.reader = subprocess.Popen(
            ["parec", "-d", "vsink.monitor", "--latency-msec=10", "--rate=48000", "--channels=1",
             "--format=s16le", "--raw"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def warm_up(self, timeout: float = 8.0) -> float:
        """Record until the input latency PortAudio reports falls below 0.1 s.

        Right after the daemon starts, the first capture streams sit on up to ~0.6 s of stale
        buffer (and their ADC times are unreliable); later streams see ~20 ms. Returns the
        last latency seen."""
        import sounddevice as sd

        latency = [float("inf")]

        def callback(indata, frames, time_info, status):
            latency[0] = time_info.currentTime - time_info.inputBufferAdcTime

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sd.InputStream(samplerate=16000, channels=1, blocksize=320, callback=callback):
                time.sleep(0.5)
            if latency[0] < 0.1:
                return latency[0]
        raise TimeoutError(f"PulseAudio capture latency still {latency[0]:.3f} s after {timeout} s")

    def _ready(self) -> bool:
        return subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=5).returncode == 0

    def play(self, wav: Path, timeout: float = 15.0) -> None:
        """Play ``wav`` into the null sink and wait until it has finished."""
        subprocess.run(["paplay", "-d", "vsink", str(wav)], env=self.env, check=True, timeout=timeout)

    def stop(self) -> None:
        for proc in (self.reader, self.daemon):
            if proc is not None:
                _stop_process(proc)


def reinit_portaudio() -> None:
    """PortAudio lists devices at initialisation: refresh it if sounddevice is loaded."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()


@pytest.fixture(scope="session")
def pulse_server() -> Iterator[PulseServer]:
    """A running PulseAudio null sink; this process's PortAudio records its monitor."""
    for tool in ("pulseaudio", "paplay", "parec", "pactl"):
        _require(tool)
    root = Path(tempfile.mkdtemp(prefix="mmgpa-"))  # short: unix socket paths are <= 107 chars
    server = PulseServer(root)
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "PULSE_COOKIE")}
    try:
        server.start()
        os.environ["PULSE_SERVER"] = server.env["PULSE_SERVER"]
        os.environ["PULSE_COOKIE"] = server.env["PULSE_COOKIE"]
        reinit_portaudio()
        server.warm_up()
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reinit_portaudio()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- serial (socat) ---------
class SocatPair:
    """Two linked ptys: write to ``device`` (the IMU side), read ``port`` with pyserial."""

    def __init__(self, root: Path) -> None:
        self.device = root / "ttyV0"
        self.port = root / "ttyV1"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 5.0) -> None:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.device.exists() and self.port.exists(), timeout, "socat pty links")

    def stop(self) -> None:
        """Terminate socat (by PID); its links disappear, as when a USB IMU is unplugged."""
        if self.proc is not None:
            _stop_process(self.proc)
            self.proc = None
        wait_for(lambda: not self.port.exists(), 3.0, "socat links to go")


@pytest.fixture
def socat_pair() -> Iterator[SocatPair]:
    """A running socat pty pair in a short temporary folder."""
    _require("socat")
    root = Path(tempfile.mkdtemp(prefix="mmgtty-"))
    pair = SocatPair(root)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


class LineWriter(threading.Thread):
    """Plays a serial IMU: writes ``make_line(seq)`` to a pty at ``rate`` Hz on an absolute
    schedule. Like a real device it keeps counting while unplugged: lines due while the pty
    cannot be written are lost, and it reopens the pty when it comes back.

    ``written`` holds the sequence numbers that reached the pty, ``garbage`` how many of the
    written lines were garbage (``make_line`` returns ``(bytes, is_garbage)``).
    """

    def __init__(self, path: Path, rate: float, make_line: Callable[[int], tuple[bytes, bool]],
                 duration: float, lead: bytes = b"\n") -> None:
        super().__init__(daemon=True, name="line-writer")
        self.path, self.rate, self.make_line, self.duration, self.lead = path, rate, make_line, duration, lead
        self.written: list[int] = []
        self.garbage = 0
        self.failed_writes = 0
        self.stop_event = threading.Event()

    def _open(self) -> int | None:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_NOCTTY)
        except OSError:
            return None

    def run(self) -> None:
        fd = self._open()
        if fd is not None and self.lead:
            os.write(fd, self.lead)  # ends whatever partial line the reader will drop
        t0 = time.monotonic()
        seq = 0
        while not self.stop_event.is_set():
            due = t0 + seq / self.rate
            if due - t0 >= self.duration:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            line, is_garbage = self.make_line(seq)
            if fd is None:
                fd = self._open()
                if fd is not None and self.lead:
                    try:
                        os.write(fd, self.lead)
                    except OSError:
                        pass
            if fd is not None:
                try:
                    os.write(fd, line)
                    if is_garbage:
                        self.garbage += 1
                    else:
                        self.written.append(seq)
                except OSError:
                    self.failed_writes += 1
                    os.close(fd)
                    fd = None
            seq += 1
        if fd is not None:
            os.close(fd)


# ---------------------------------------------------------------- camera files -----------
def frame_pattern(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB frame whose pixels encode ``index``: R = index, G = 255 - index, B = x-ramp."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = index % 256
    frame[..., 1] = 255 - index % 256
    frame[..., 2] = (np.arange(width) * 4 % 256).astype(np.uint8)[None, :]
    return frame


def write_ffv1_avi(path: Path, frames: int, fps: float, height: int = 48, width: int = 64) -> Path:
    """A lossless FFV1 .avi of :func:`frame_pattern` frames (written as BGR, as OpenCV does)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1")
    for i in range(frames):
        writer.write(cv2.cvtColor(frame_pattern(i, height, width), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def mjpeg_level(i: int) -> int:
    """Grey level of MJPEG test frame ``i`` (steps of 5, so frames 0-49 are told apart)."""
    return (i % 50) * 5


class MjpegServer:
    """A live network camera: MJPEG over HTTP on 127.0.0.1, paced at ``fps`` by the server.
    Frame ``i`` (counted from the first frame sent to a client) is a flat grey of level
    ``mjpeg_level(i)`` (flat, so JPEG keeps it exact to a level or two)."""

    def __init__(self, fps: float = 20.0, height: int = 48, width: int = 64) -> None:
        import http.server

        self.fps, self.height, self.width = fps, height, width
        self.sent = 0
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                import cv2

                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                t0 = time.monotonic()
                i = 0
                while not server.stopping.is_set():
                    delay = t0 + i / server.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    bgr = np.full((server.height, server.width, 3), mjpeg_level(i), np.uint8)
                    jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    server.sent = i + 1
                    i += 1

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="mjpeg-server")

    def __enter__(self) -> "MjpegServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=3.0)
