"""Where predictions go besides the GUI: JSON lines (file or stdout) and a ZeroMQ PUB socket.

Both sinks are callables, so they plug straight into ``InferenceEngine(on_prediction=...)``;
they are called from the engine's worker thread only. Each message is
:meth:`Prediction.to_json() <mmg_live.live.prediction.Prediction.to_json>` (one JSON object).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TextIO

from mmg_live.live.prediction import Prediction

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
TOPIC = b"prediction"


class JsonlSink:
    """Append each prediction as one JSON line to a file, ``"-"``/``None`` (stdout) or a text stream.

    Lines are flushed as written so a crash loses at most the line being written; a file is
    opened in append mode and never truncated.
    """

    def __init__(self, path_or_stdout: str | os.PathLike | TextIO | None = "-") -> None:
        self._owned = False
        if path_or_stdout is None or path_or_stdout == "-":
            self._stream: TextIO = sys.stdout
            self.name = "<stdout>"
        elif hasattr(path_or_stdout, "write"):
            self._stream = path_or_stdout  # type: ignore[assignment]
            self.name = getattr(path_or_stdout, "name", repr(path_or_stdout))
        else:
            path = Path(path_or_stdout)
            try:
                self._stream = open(path, "a", encoding="utf-8")
            except OSError as exc:
                raise OSError(f"--jsonl {path}: cannot open for appending ({exc.strerror or exc})") from None
            self._owned = True
            self.name = str(path)
        self._lock = threading.Lock()
        self.written = 0

    def write(self, prediction: Prediction) -> None:
        """Write one prediction as a line and flush it."""
        line = prediction.to_json() + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()
            self.written += 1

    __call__ = write

    def close(self) -> None:
        """Close the file (a stream it was given is left open)."""
        with self._lock:
            if self._owned and not self._stream.closed:
                self._stream.close()


class ZmqPredictionPublisher:
    """Publish predictions on a ZeroMQ PUB socket as ``[b"prediction", json]`` two-part messages.

    Binds ``endpoint`` (loopback by default; bind another address only when the user asks).
    Subscribers that connect late miss earlier predictions (PUB/SUB semantics); with a slow
    subscriber, messages beyond ``sndhwm`` are dropped rather than blocking the engine.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, sndhwm: int = 1000) -> None:
        import zmq

        self.endpoint = endpoint
        self._ctx = zmq.Context.instance()
        self._socket = self._ctx.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, int(sndhwm))
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close(0)
            raise OSError(f"--publish {endpoint}: cannot bind ({exc})") from None
        # tcp://127.0.0.1:0 or :* binds a free port: report the real one
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT) or endpoint
        self._zmq = zmq
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0

    def publish(self, prediction: Prediction) -> None:
        """Send one prediction (never blocks: counted as dropped when the queue is full)."""
        with self._lock:
            if self._socket.closed:
                return
            try:
                self._socket.send_multipart([TOPIC, prediction.to_json().encode()], flags=self._zmq.NOBLOCK)
                self.sent += 1
            except self._zmq.Again:
                self.dropped += 1

    __call__ = publish

    def close(self) -> None:
        """Close the socket (idempotent)."""
        with self._lock:
            if not self._socket.closed:
                self._socket.close(0)
