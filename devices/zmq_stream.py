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

The ``mmg-stream`` console script that publishes local devices is :mod:`mmg_live.stream_cli`.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections import deque
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
