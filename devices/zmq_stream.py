"""Stream Sources over ZeroMQ: publish local sources, subscribe to remote ones.

Wire format (one multipart message per chunk)::

    [topic = stream name (utf-8),
     header = JSON {"modality", "stream", "dtype", "shape", "seq", "n", "sent"},
     timestamps = float64 little-endian bytes [n],
     data = raw bytes of the C-contiguous array [n, ...] in header["dtype"]/["shape"]]

A beacon ``[b"__mmg_clock__", JSON {"host_now", "hostname", "pid", "streams": {name: {...}}}]``
is published every ``beacon_interval`` seconds and immediately whenever a subscription
arrives (the publisher is an XPUB socket, so it sees subscriptions). A subscriber subscribes to
its stream first and to the beacon topic second, and waits for a beacon: once one arrives
both subscriptions are in force, so nothing published afterwards is missed (the "slow joiner"
handshake). Beacons also carry the catalogue of streams (name, modality, nominal rate) and the
sender's host clock: the receiver's ``health().clock_offset`` is its estimate of
``receiver_clock - sender_clock`` (minimum over recent beacons of arrival time minus sent time).
Chunk timestamps stay on the sender's clock unless ``rebase=True``.

Security: binds to ``tcp://127.0.0.1:5555`` unless told otherwise. CURVE encryption uses
certificate files made by :func:`zmq.auth.create_certificates` (``mmg-stream --curve-keygen
DIR`` writes a server and a client pair): the publisher loads its ``*.key_secret`` file
(``--curve-secret``), optionally admitting only client keys found in ``--curve-clients DIR``;
a subscriber loads the server's public ``*.key`` file (``curve_server_key``).

``main()`` is the ``mmg-stream`` console script.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zmq

from devices.base import Chunk, DeviceError, Source, SourceBase, host_now

DEFAULT_BIND = "tcp://127.0.0.1:5555"
BEACON_TOPIC = b"__mmg_clock__"


# --------------------------------------------------------------------------------------------
# wire format
# --------------------------------------------------------------------------------------------


def encode_chunk(chunk: Chunk, seq: int, stream: str | None = None) -> list[Any]:
    """A chunk as the four frames of one message (arrays are sent without copying)."""
    name = stream or chunk.stream or chunk.modality
    data = np.ascontiguousarray(chunk.data)
    ts = np.ascontiguousarray(chunk.timestamps, dtype="<f8")
    header = {
        "modality": chunk.modality,
        "stream": name,
        "dtype": data.dtype.str,
        "shape": list(data.shape),
        "seq": int(seq),
        "n": int(len(ts)),
        "sent": host_now(),
    }
    return [name.encode(), json.dumps(header).encode(), _raw(ts), _raw(data)]


def _raw(a: np.ndarray) -> memoryview | bytes:
    """The bytes of a C-contiguous array without copying."""
    return memoryview(a.reshape(-1).view(np.uint8)) if a.size else b""


def decode_chunk(frames: Sequence[bytes | memoryview]) -> tuple[Chunk, dict]:
    """The chunk and header of a message made by :func:`encode_chunk`; ValueError when malformed."""
    if len(frames) != 4:
        raise ValueError(f"zmq chunk: expected 4 frames, got {len(frames)}")
    header = json.loads(bytes(frames[1]))
    ts = np.frombuffer(frames[2], dtype="<f8").astype(np.float64)
    dtype = np.dtype(header["dtype"])
    shape = tuple(header["shape"])
    data = np.frombuffer(frames[3], dtype=dtype)
    if data.size != int(np.prod(shape)) or len(ts) != (shape[0] if shape else 0):
        raise ValueError(f"zmq chunk {header.get('stream')!r} seq {header.get('seq')}: sizes do not match header")
    return Chunk(header["modality"], ts, data.reshape(shape).copy(), header["stream"]), header


def _load_cert(path: str | os.PathLike, what: str) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise DeviceError(f"{what}: cannot load CURVE certificate {path}: {exc}") from exc
    return public, secret


# --------------------------------------------------------------------------------------------
# publisher
# --------------------------------------------------------------------------------------------


class ZmqPublisher:
    """Publish chunks (from any Sources) on an XPUB socket, with clock beacons.

    Args:
        bind: endpoint to bind, ``tcp://127.0.0.1:5555`` by default; ``tcp://127.0.0.1:*``
            picks a free port (see :attr:`endpoint`); ``ipc:///tmp/x`` works too.
        curve_secret: the publisher's CURVE secret certificate file (enables encryption).
        curve_clients: folder of allowed client public certificates (default: any client that
            knows the server's public key).
        beacon_interval: seconds between clock beacons.
        hwm: ZeroMQ send high-water mark (messages queued per subscriber before dropping).
        queue_size: chunks queued between capture threads and the sender before dropping.
        linger_ms: how long ``close`` lets queued messages go out.
        sources: Sources to publish from the start (see :meth:`add_source`).
    """

    def __init__(
        self,
        bind: str = DEFAULT_BIND,
        *,
        curve_secret: str | os.PathLike | None = None,
        curve_clients: str | os.PathLike | None = None,
        beacon_interval: float = 0.5,
        hwm: int = 1000,
        queue_size: int = 1000,
        linger_ms: int = 1000,
        sources: Sequence[Source] = (),
        context: zmq.Context | None = None,
    ) -> None:
        self.ctx = context or zmq.Context.instance()
        self.beacon_interval = float(beacon_interval)
        self.linger_ms = int(linger_ms)
        self._auth = None
        self._catalog: dict[str, dict] = {}
        self._sources: list[Source] = []
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._seq: dict[str, int] = {}
        self._seq_lock = threading.Lock()
        self._subscriptions: dict[bytes, int] = {}
        self._sub_cond = threading.Condition()
        self.sent = 0
        self.dropped = 0
        self._stop = threading.Event()
        sock = self.ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        if curve_secret is not None:
            if not zmq.has("curve"):
                raise DeviceError("zmq publisher: this libzmq has no CURVE support")
            public, secret = _load_cert(curve_secret, "zmq publisher")
            if secret is None:
                raise DeviceError(f"zmq publisher: {curve_secret} holds no secret key (use the *.key_secret file)")
            if curve_clients is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(self.ctx)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(curve_clients))
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
        try:
            sock.bind(bind)
        except zmq.ZMQError as exc:
            sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            raise DeviceError(f"zmq publisher: cannot bind {bind}: {exc}") from exc
        self.endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        for src in sources:  # in the catalogue before the first beacon
            self.add_source(src)
        self._thread = threading.Thread(target=self._run, name="zmq-publisher", daemon=True)
        self._thread.start()

    def add_source(self, source: Source) -> None:
        """Publish every chunk of ``source`` (under its name) from now on."""
        h = source.health()
        self._catalog[source.name] = {"modality": source.modality, "nominal_rate": h.nominal_rate}
        self._sources.append(source)
        source.subscribe(lambda chunk, name=source.name: self.publish(chunk, name))

    def announce(self, stream: str, modality: str, nominal_rate: float = 0.0) -> None:
        """List a stream in the beacon's catalogue before its first chunk."""
        self._catalog[stream] = {"modality": modality, "nominal_rate": float(nominal_rate)}

    def publish(self, chunk: Chunk, stream: str | None = None) -> bool:
        """Queue a chunk for sending (thread-safe); False when the queue was full and it was dropped."""
        name = stream or chunk.stream or chunk.modality
        if name not in self._catalog:
            self._catalog[name] = {"modality": chunk.modality, "nominal_rate": 0.0}
        with self._seq_lock:
            seq = self._seq.get(name, 0)
            self._seq[name] = seq + 1
        try:
            self._queue.put_nowait((name, seq, chunk))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def wait_for_subscribers(self, count: int = 1, timeout: float = 5.0, topic: str | None = None) -> bool:
        """Wait until ``count`` subscriptions (to ``topic``, or to the beacon) have arrived."""
        key = topic.encode() if topic is not None else BEACON_TOPIC
        deadline = time.monotonic() + timeout
        with self._sub_cond:
            while self._subscriptions.get(key, 0) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._sub_cond.wait(left)
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued chunk has been handed to ZeroMQ."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.002)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        """Stop the sender and close the socket (does not stop the sources). Idempotent."""
        self._stop.set()
        self._thread.join(5.0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def _beacon(self) -> None:
        payload = {
            "host_now": host_now(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "streams": {
                name: {**info, "nominal_rate": self._rate(name, info)} for name, info in list(self._catalog.items())
            },
        }
        self._sock.send_multipart([BEACON_TOPIC, json.dumps(payload).encode()])

    def _rate(self, name: str, info: dict) -> float:
        for src in self._sources:
            if src.name == name:
                return float(src.health().nominal_rate)
        return float(info.get("nominal_rate", 0.0))

    def _poll_subscriptions(self) -> bool:
        new = False
        while self._sock.poll(0, zmq.POLLIN):
            msg = self._sock.recv()
            if not msg:
                continue
            topic = bytes(msg[1:])
            with self._sub_cond:
                delta = 1 if msg[0] == 1 else -1
                self._subscriptions[topic] = max(0, self._subscriptions.get(topic, 0) + delta)
                self._sub_cond.notify_all()
            new = new or msg[0] == 1
        return new

    def _run(self) -> None:
        next_beacon = 0.0
        try:
            while not self._stop.is_set():
                if self._poll_subscriptions() or time.monotonic() >= next_beacon:
                    self._beacon()
                    next_beacon = time.monotonic() + self.beacon_interval
                try:
                    name, seq, chunk = self._queue.get(timeout=0.01)
                except queue.Empty:
                    continue
                try:
                    self._sock.send_multipart(encode_chunk(chunk, seq, name), copy=False)
                    self.sent += 1
                finally:
                    self._queue.task_done()
        finally:
            self._sock.close(linger=self.linger_ms)  # let queued messages go out


# --------------------------------------------------------------------------------------------
# subscriber
# --------------------------------------------------------------------------------------------


class RemoteSource(SourceBase):
    """A stream published by a remote :class:`ZmqPublisher` (``mmg-stream``), as a Source.

    Args:
        endpoint: e.g. ``tcp://192.168.1.20:5555`` or ``ipc:///tmp/mmg``.
        stream: the remote stream's name.
        modality: expected modality (default: taken from the publisher's catalogue on start).
        curve_server_key: the publisher's public certificate file (enables CURVE).
        curve_secret: this client's secret certificate file (default: an ephemeral key pair).
        connect_timeout: ``start()`` raises :class:`DeviceError` when no beacon arrives in time.
        rebase: shift chunk timestamps onto this host's clock by the estimated offset.
    """

    def __init__(
        self,
        endpoint: str,
        stream: str,
        *,
        modality: str | None = None,
        curve_server_key: str | os.PathLike | None = None,
        curve_secret: str | os.PathLike | None = None,
        connect_timeout: float = 3.0,
        rebase: bool = False,
        context: zmq.Context | None = None,
    ) -> None:
        super().__init__(stream)
        self.endpoint = endpoint
        self.modality = modality or ""
        self.curve_server_key = curve_server_key
        self.curve_secret = curve_secret
        self.connect_timeout = float(connect_timeout)
        self.rebase = rebase
        self.ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._offsets: deque[float] = deque(maxlen=20)
        self._last_beacon: float | None = None
        self._next_seq: int | None = None
        self._catalog: dict[str, dict] = {}
        self._start_error: str | None = None
        self._missing: str | None = None
        self._probe = False

    def start(self) -> None:
        """Connect, handshake (wait for a beacon) and start receiving; DeviceError on failure."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._ready.clear()
        self._start_error = None
        self._missing = None
        self._thread = threading.Thread(target=self._run, name=f"zmq-sub:{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.connect_timeout):
            self.stop()
            raise DeviceError(
                self._missing
                or f"remote {self.endpoint}: no mmg-stream publisher answered within {self.connect_timeout:g} s"
            )
        if self._start_error:
            self.stop()
            raise DeviceError(self._start_error)

    def stop(self) -> None:
        """Disconnect. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            self._health.connected = False

    def health(self):  # type: ignore[override]
        h = super().health()
        if self._last_beacon is not None and host_now() - self._last_beacon > 3.0:
            h.connected = False  # the publisher went quiet
        return h

    def _socket(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 10000)
        if self.curve_server_key is not None:
            server_public, _ = _load_cert(self.curve_server_key, f"remote {self.endpoint}")
            if self.curve_secret is not None:
                public, secret = _load_cert(self.curve_secret, f"remote {self.endpoint}")
                if secret is None:
                    raise DeviceError(f"remote {self.endpoint}: {self.curve_secret} holds no secret key")
            else:
                public, secret = zmq.curve_keypair()
            sock.curve_serverkey = server_public
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        # stream first, beacon second: a beacon received proves both subscriptions are active
        sock.setsockopt(zmq.SUBSCRIBE, self.name.encode())
        sock.setsockopt(zmq.SUBSCRIBE, BEACON_TOPIC)
        sock.connect(self.endpoint)
        return sock

    def _on_beacon(self, payload: dict, arrived: float) -> None:
        self._offsets.append(arrived - float(payload["host_now"]))
        self._last_beacon = arrived
        self._catalog = payload.get("streams", {})
        info = self._catalog.get(self.name)
        if self._probe:
            self._ready.set()
            return
        with self._lock:
            self._health.clock_offset = min(self._offsets)
            self._health.connected = True
            self._health.extra.update(remote_host=payload.get("hostname"), remote_pid=payload.get("pid"))
            if info:
                self._health.nominal_rate = float(info.get("nominal_rate") or 0.0)
        if not self._ready.is_set():
            if info is None:
                # the publisher may announce it later (devices still opening): keep waiting
                self._missing = (
                    f"remote {self.endpoint}: publisher has no stream {self.name!r}; it has {sorted(self._catalog)}"
                )
                return
            elif self.modality and info["modality"] != self.modality:
                self._start_error = (
                    f"remote {self.endpoint}: stream {self.name!r} is {info['modality']}, expected {self.modality}"
                )
            else:
                self.modality = info["modality"]
            self._ready.set()

    def _on_chunk(self, frames: list) -> None:
        try:
            chunk, header = decode_chunk(frames)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            with self._lock:
                self._health.bad_lines += 1
                self._health.error = str(exc)
            return
        seq = int(header["seq"])
        with self._lock:
            if self._next_seq is not None and seq > self._next_seq:
                self._health.gaps += 1
                self._health.dropped += seq - self._next_seq
            self._next_seq = seq + 1
        if self.rebase:
            chunk = Chunk(chunk.modality, chunk.timestamps + self._health.clock_offset, chunk.data, chunk.stream)
        self._emit(chunk)

    def _run(self) -> None:
        try:
            sock = self._socket()
        except (DeviceError, zmq.ZMQError) as exc:
            self._start_error = str(exc) if isinstance(exc, DeviceError) else f"remote {self.endpoint}: {exc}"
            self._ready.set()
            return
        topic = self.name.encode()
        try:
            while not self._stop.is_set():
                if not sock.poll(50, zmq.POLLIN):
                    continue
                frames = sock.recv_multipart(copy=True)
                arrived = host_now()
                if frames[0] == BEACON_TOPIC:
                    try:
                        self._on_beacon(json.loads(frames[1]), arrived)
                    except (ValueError, KeyError, IndexError):
                        pass
                elif frames[0] == topic:  # exact match: "imu" must not take "imu2"
                    self._on_chunk(frames)
        finally:
            sock.close(0)


def open_remote(
    endpoint: str,
    *,
    timeout: float = 3.0,
    curve_server_key: str | os.PathLike | None = None,
    curve_secret: str | os.PathLike | None = None,
    rebase: bool = False,
) -> list[RemoteSource]:
    """One (unstarted) :class:`RemoteSource` per stream the publisher at ``endpoint`` announces."""
    probe = RemoteSource(
        endpoint, BEACON_TOPIC.decode(), curve_server_key=curve_server_key, curve_secret=curve_secret,
        connect_timeout=timeout,
    )
    probe._probe = True  # ready on the first beacon, whatever it lists
    try:
        probe.start()
    finally:
        probe.stop()
    if not probe._catalog:
        raise DeviceError(f"remote {endpoint}: the publisher announces no streams")
    return [
        RemoteSource(
            endpoint, name, modality=info["modality"], curve_server_key=curve_server_key,
            curve_secret=curve_secret, connect_timeout=timeout, rebase=rebase,
        )
        for name, info in sorted(probe._catalog.items())
    ]


# --------------------------------------------------------------------------------------------
# local device construction (shared with mmg-live)
# --------------------------------------------------------------------------------------------


def parse_imu_spec(spec: str, default_baud: int = 115200) -> tuple[str, int]:
    """``"PORT[@BAUD]"`` → ``(port, baud)``; ValueError naming the spec when BAUD is not a number."""
    port, sep, baud = spec.rpartition("@")
    if not sep or "://" in baud:
        return spec, default_baud
    if not baud.isdigit() or int(baud) <= 0:
        raise ValueError(f"--imu {spec!r}: baud rate {baud!r} is not a positive integer")
    return port, int(baud)


def make_camera(spec: str) -> Source:
    """``devices.camera.CameraSource(spec)`` (imported only when a camera is asked for)."""
    try:
        from devices import camera
    except ImportError as exc:
        raise DeviceError(f"camera {spec}: camera support is not available ({exc})") from exc
    return camera.CameraSource(spec)


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


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--camera/--mic/--imu/--replay/--speed`` options shared by mmg-stream and mmg-live."""
    parser.add_argument("--camera", metavar="SPEC", help="camera index, video file or URL")
    parser.add_argument(
        "--mic", nargs="?", const="", default=None, metavar="DEVICE",
        help="microphone (optional PortAudio device index or name; default input when omitted)",
    )
    parser.add_argument("--imu", metavar="PORT[@BAUD]", help="serial IMU port, e.g. /dev/ttyACM0@115200")
    parser.add_argument("--replay", metavar="DIR", help="replay a recorded session folder")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    parser.add_argument("--loop", action="store_true", help="replay: start again from the beginning at the end")


def build_sources(args: argparse.Namespace, prog: str) -> list[tuple[str, Any]]:
    """Factories ``(label, make)`` for the devices named in ``args``; ``make()`` builds the Source(s)."""
    out: list[tuple[str, Any]] = []
    if args.camera is not None:
        out.append((f"camera {args.camera}", lambda: [make_camera(args.camera)]))
    if args.mic is not None:
        label = f"microphone {args.mic or 'default'}"
        out.append((label, lambda: [make_microphone(args.mic or None)]))
    if args.imu is not None:
        parse_imu_spec(args.imu)  # bad spec: fail now, before anything opens
        out.append((f"imu {args.imu}", lambda: [make_imu(args.imu)]))
    if args.replay is not None:
        from devices.replay import open_replay

        out.append((f"replay {args.replay}", lambda: open_replay(args.replay, speed=args.speed,
                                                                    loop=getattr(args, "loop", False))))
    return out


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


def _keygen(folder: str) -> int:
    import zmq.auth

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        if (path / f"{name}.key_secret").exists():
            print(f"mmg-stream: {path / (name + '.key_secret')} exists; not overwriting", file=sys.stderr)
            return 1
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(str(path), name)
        os.chmod(secret, 0o600)
    print(f"mmg-stream: wrote {path}/server.key(_secret) and {path}/client.key(_secret)")
    print(f"  publisher:  mmg-stream --curve-secret {path}/server.key_secret ...")
    print(f"  subscriber: mmg-live --remote ENDPOINT --curve-server-key {path}/server.key")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mmg-stream``: publish local devices (or a replayed session) over ZeroMQ."""
    parser = argparse.ArgumentParser(
        prog="mmg-stream", description="Publish camera/microphone/IMU chunks over ZeroMQ (loopback by default)."
    )
    add_device_arguments(parser)
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
    args = parser.parse_args(argv)
    if args.curve_keygen:
        return _keygen(args.curve_keygen)
    if args.curve_clients and not args.curve_secret:
        parser.error("--curve-clients needs --curve-secret")
    try:
        factories = build_sources(args, "mmg-stream")
    except ValueError as exc:
        parser.error(str(exc))
    if not factories:
        parser.error("nothing to publish: give --camera, --mic, --imu and/or --replay")
    sources: list[Source] = []
    for label, make in factories:
        try:
            sources.extend(make())
        except Exception as exc:  # a missing device must not stop the others
            msg = str(exc) if isinstance(exc, DeviceError) else f"{label}: {exc}"
            print(f"mmg-stream: {msg}", file=sys.stderr)
    unique_names(sources)
    try:
        pub = ZmqPublisher(
            args.bind, curve_secret=args.curve_secret, curve_clients=args.curve_clients, sources=sources
        )
    except DeviceError as exc:
        print(f"mmg-stream: {exc}", file=sys.stderr)
        return 1
    started: list[Source] = []
    try:
        print(f"mmg-stream: publishing on {pub.endpoint}: {', '.join(s.name for s in sources) or 'nothing'}", flush=True)
        if args.wait_subscriber > 0 and not pub.wait_for_subscribers(1, args.wait_subscriber):
            print(f"mmg-stream: no subscriber within {args.wait_subscriber:g} s; starting anyway", file=sys.stderr)
        for src in sources:
            try:
                src.start()
                started.append(src)
            except Exception as exc:
                print(f"mmg-stream: {src.name}: {exc}", file=sys.stderr)
        if not started:
            print("mmg-stream: no device could be opened", file=sys.stderr)
            return 1
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic())))
            if all(s.health().extra.get("state") == "finished" for s in started):
                break
    except KeyboardInterrupt:
        pass
    finally:
        for src in started:
            src.stop()
        pub.flush(2.0)
        pub.close()
        pub.ctx.term()  # waits (up to the linger time) until queued messages are sent
    for src in started:
        h = src.health()
        print(f"mmg-stream: {src.name}: {h.samples} samples sent", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
