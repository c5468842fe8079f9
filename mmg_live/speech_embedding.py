"""A frozen, pretrained speech embedding as an audio front end.

EfficientWord-Net (``pip install efficientword-net``, Apache-2.0, module ``eff_word_net``) ships a
ResNet-50 trained with an ArcFace loss on words spoken by many speakers, as ONNX. It reads 1.5 s of
16 kHz mono audio as a ``[149, 64]`` log mel filterbank (its own ``logfbank``: 25 ms windows every
10 ms, 64 filters, 512-point FFT, no pre-emphasis) and returns a unit-length 2048-d embedding.

The model file is read from the installed package (never downloaded) and run by onnxruntime: one
session per process, created on first use under a lock, with one intra-op thread unless
``$MMG_SPEECH_THREADS`` says otherwise (read when the session is created). The ONNX graph fixes the
batch at 1, so :func:`embed` runs the rows of a batch one after another (~40 ms each on one core).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000  #: Hz, the rate the embedding reads
WINDOW_S = 1.5  #: seconds of audio per embedding
NUM_SAMPLES = int(round(WINDOW_S * SAMPLE_RATE))  #: 24000 samples
NUM_FRAMES = 149  #: logfbank frames of one window
NUM_FILTERS = 64  #: mel filters per frame
EMBED_DIM = 2048  #: embedding size
MODEL_FILE = "slim_93%_accuracy_72.7390%.onnx"
QUANTIZED_MODEL_FILE = "slim_93%_accuracy_72.7390%_qint8.onnx"
PIP_INSTALL = "pip install --no-deps efficientword-net==1.0.5 (and onnxruntime==1.32.0)"

_lock = threading.Lock()
_session: Any = None
_session_pid: int | None = None


class SpeechEmbeddingUnavailable(ImportError):
    """The ``eff_word_net`` package or onnxruntime is not installed; the message names the pip command."""


def model_path(quantized: bool = False) -> Path:
    """Path of the installed package's ONNX model (the qint8 variant with ``quantized``)."""
    try:
        from importlib.resources import files

        root = files("eff_word_net")
    except ModuleNotFoundError as exc:
        raise SpeechEmbeddingUnavailable(
            f"the speech embedding front end needs the eff_word_net package: {PIP_INSTALL}") from exc
    path = Path(str(root)) / "models" / "resnet_50_arc" / (QUANTIZED_MODEL_FILE if quantized else MODEL_FILE)
    if not path.is_file():
        raise SpeechEmbeddingUnavailable(f"eff_word_net is installed but lacks {path}; reinstall it: {PIP_INSTALL}")
    return path


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ModuleNotFoundError as exc:
        raise SpeechEmbeddingUnavailable(f"the speech embedding front end needs onnxruntime: {PIP_INSTALL}") from exc
    return onnxruntime


def _session_options(threads: int) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def session() -> Any:
    """This process's onnxruntime session of the fp32 model, created on first call (thread-safe).

    A process forked after the session was made gets its own (onnxruntime sessions are not
    shared across ``fork``).
    """
    global _session, _session_pid
    pid = os.getpid()
    if _session is not None and _session_pid == pid:
        return _session
    with _lock:
        if _session is None or _session_pid != pid:
            path = model_path()
            threads = int(os.environ.get("MMG_SPEECH_THREADS", "1"))
            ort = _onnxruntime()
            _session = ort.InferenceSession(str(path), _session_options(threads), providers=["CPUExecutionProvider"])
            _session_pid = pid
    return _session


def logfbank_features(wave: np.ndarray) -> np.ndarray:
    """``[NUM_SAMPLES]`` float waveform at 16 kHz → ``[NUM_FRAMES, NUM_FILTERS]`` float32 log filterbank,
    exactly as EfficientWord-Net computes it for its ResNet-50 (``Resnet50_Arc_loss``)."""
    try:
        from eff_word_net.audio_utils import logfbank
    except ModuleNotFoundError as exc:
        raise SpeechEmbeddingUnavailable(
            f"the speech embedding front end needs the eff_word_net package: {PIP_INSTALL}") from exc
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if wave.shape[0] != NUM_SAMPLES:
        raise ValueError(f"speech embedding: expected {NUM_SAMPLES} samples (1.5 s at 16 kHz), got {wave.shape[0]}")
    if float(np.abs(wave).max(initial=0.0)) < SILENCE_PEAK:
        # digital silence (a muted input, zero padding) gives a constant filterbank, on which the
        # network's normalisation divides 0 by 0: feed a fixed noise floor far below any microphone's
        wave = silence_floor()
    return np.asarray(logfbank(wave, samplerate=SAMPLE_RATE, winlen=0.025, winstep=0.01, nfilt=NUM_FILTERS,
                               nfft=512, preemph=0.0), dtype=np.float32)


SILENCE_PEAK = 1e-7  #: a window whose peak is below this is digital silence
SILENCE_FLOOR = 1e-6  #: RMS of the fixed noise that stands in for it (-120 dBFS)


def silence_floor() -> np.ndarray:
    """The fixed (seeded) white noise at :data:`SILENCE_FLOOR` that replaces a silent window."""
    return np.random.default_rng(0).standard_normal(NUM_SAMPLES) * SILENCE_FLOOR


def embed(logfbank_batch: np.ndarray) -> np.ndarray:
    """Log filterbanks ``[B, 149, 64]`` (or ``[B, 1, 149, 64]``, or one ``[149, 64]``) → unit-length
    embeddings ``[B, 2048]`` float32."""
    x = np.asarray(logfbank_batch, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1:] != (NUM_FRAMES, NUM_FILTERS):
        raise ValueError(f"speech embedding: expected [B, {NUM_FRAMES}, {NUM_FILTERS}] log filterbanks, "
                         f"got {tuple(np.shape(logfbank_batch))}")
    sess = session()
    name = sess.get_inputs()[0].name
    out = np.empty((x.shape[0], EMBED_DIM), dtype=np.float32)
    for i in range(x.shape[0]):
        out[i] = sess.run(None, {name: np.ascontiguousarray(x[i][None, None])})[0][0]
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise ValueError(f"speech embedding: not finite for {int(bad.sum())} of {len(out)} windows "
                         "(a constant log filterbank?)")
    return out


def embed_waveform(wave: np.ndarray) -> np.ndarray:
    """One 1.5 s, 16 kHz window ``[NUM_SAMPLES]`` → its embedding ``[2048]``."""
    return embed(logfbank_features(wave))[0]


# ------------------------------------------------------------------------------------ model cost

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, start: int = 0, end: int | None = None):
    """``(field number, wire type, value)`` of a protobuf message; length-delimited values as
    ``(start, end)`` offsets into ``buf`` (no copy)."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"ONNX file: unsupported protobuf wire type {wire}")
        yield number, wire, value


def _initializer_sizes(path: Path) -> list[int]:
    """Element counts of the graph's initializers (ModelProto.graph=7 → GraphProto.initializer=5 →
    TensorProto.dims=1), read from the protobuf wire format without the ``onnx`` package."""
    buf = path.read_bytes()
    sizes = []
    for number, wire, value in _fields(buf):
        if number != 7 or wire != 2:
            continue
        for g_number, g_wire, g_value in _fields(buf, *value):
            if g_number != 5 or g_wire != 2:
                continue
            dims: list[int] = []
            for t_number, t_wire, t_value in _fields(buf, *g_value):
                if t_number == 1 and t_wire == 0:
                    dims.append(int(t_value))
                elif t_number == 1 and t_wire == 2:  # packed
                    pos, stop = t_value
                    while pos < stop:
                        d, pos = _varint(buf, pos)
                        dims.append(d)
            sizes.append(int(np.prod(dims)) if dims else 1)
    return sizes


def model_cost() -> dict[str, Any]:
    """Parameters and multiply-adds of one embedding, for ``mmg-eval flops``.

    ``params``: elements of the ONNX graph's initializers (weights, BatchNorm statistics and a few
    constants). ``macs``: multiply-adds of its Conv, Gemm and MatMul nodes (one fused multiply-add
    counted once, fvcore's convention), from the node shapes onnxruntime reports when profiling one
    run with graph optimisations off (so nodes are the graph's own, unfused). Element-wise work
    (BatchNorm, activations, pooling, the input's min-max scaling) is not counted.
    """
    ort = _onnxruntime()
    path = model_path()
    options = _session_options(1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    macs = 0
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "speech")
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 1, NUM_FRAMES, NUM_FILTERS), np.float32)})
        events = json.loads(Path(sess.end_profiling()).read_text())
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        shapes = [next(iter(s.values())) for s in args["input_type_shape"]]
        out = next(iter(args["output_type_shape"][0].values()))
        if args["op_name"] == "Conv":  # weight [C_out, C_in / groups, kH, kW]
            macs += int(np.prod(out)) * int(np.prod(shapes[1][1:]))
        elif args["op_name"] in ("Gemm", "MatMul"):
            macs += int(np.prod(out)) * int(shapes[0][-1])
    return {"params": int(sum(_initializer_sizes(path))), "macs": int(macs)}
