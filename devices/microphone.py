"""Microphone capture through PortAudio (``sounddevice.InputStream``).

Timestamps come from PortAudio's ``inputBufferAdcTime`` (when the first sample of a block
hit the converter), mapped from the stream clock onto the host clock with a
:class:`devices.clock.ClockFit` fed by (``currentTime``, ``host_now()``) pairs taken in every
callback. Consecutive blocks are kept sample-continuous (spacing exactly 1/samplerate) while
the observed time is within ``continuity_tol_s``; the small remaining error is slewed out, and
a larger jump (overflow, device hiccup) starts a new run and counts a gap and the dropped
samples.

``sounddevice`` is imported lazily: PortAudio lists devices when it is initialised, so a sound
server started after this module was imported is still seen.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from devices.base import Chunk, DeviceError, SourceBase, host_now
from devices.clock import ClockFit, RateMeter


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as e:  # libportaudio2 missing
        raise DeviceError(f"microphone: PortAudio is not available ({e}); install libportaudio2") from e
    return sd


def list_microphones() -> list[dict[str, Any]]:
    """Input devices PortAudio sees: ``index``, ``name``, ``channels``, ``default_samplerate``,
    ``hostapi`` and ``default`` (True for the default input). Empty when there are none."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0]
        hostapis = sd.query_hostapis()
    except sd.PortAudioError:
        return []
    out = []
    for d in devices:
        if d["max_input_channels"] > 0:
            out.append({
                "index": d["index"],
                "name": d["name"],
                "channels": d["max_input_channels"],
                "default_samplerate": d["default_samplerate"],
                "hostapi": hostapis[d["hostapi"]]["name"],
                "default": d["index"] == default_in,
            })
    return out


class MicrophoneSource(SourceBase):
    """Audio from a PortAudio input device, as ``[n, channels]`` float32 chunks in [-1, 1].

    Args:
        device: PortAudio device index or (part of) its name; None for the default input.
        samplerate: samples per second requested from the device.
        channels: number of input channels.
        blocksize: frames per callback (default: 20 ms).
        name: stream name.
        latency: PortAudio latency hint (``"low"``, ``"high"`` or seconds).
        continuity_tol_s: block-start error tolerated before a new run starts (default:
            half a block, at least 5 ms).
        queue_s: audio buffered between the PortAudio callback and the capture thread; when
            subscribers fall further behind, blocks are dropped and counted.
    """

    modality = "audio"

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: int = 16000,
        channels: int = 1,
        blocksize: int | None = None,
        *,
        name: str = "mic",
        latency: str | float = "low",
        continuity_tol_s: float | None = None,
        queue_s: float = 2.0,
    ) -> None:
        super().__init__(name)
        if samplerate <= 0 or channels <= 0:
            raise ValueError(f"microphone: samplerate and channels must be positive, got {samplerate}, {channels}")
        self.device = device
        self.samplerate = int(samplerate)
        self.channels = int(channels)
        self.blocksize = int(blocksize or max(1, self.samplerate // 50))
        self.latency = latency
        self.continuity_tol_s = continuity_tol_s or max(0.005, 0.5 * self.blocksize / self.samplerate)
        self._queue: queue.Queue = queue.Queue(maxsize=max(4, int(queue_s * self.samplerate / self.blocksize)))
        self._stream = None
        self._thread: threading.Thread | None = None
        self._fit = ClockFit(window_s=60.0, bucket_s=0.5)
        self._meter = RateMeter()
        self._next_t: float | None = None
        self._overflows = 0
        self._adc_missing = False
        with self._lock:
            self._health.nominal_rate = float(self.samplerate)
            self._health.extra.update(device=device, overflows=0, timing="adc", last_gap_s=0.0)

    def _label(self) -> str:
        return f"microphone {self.device if self.device is not None else 'default'}"

    def start(self) -> None:
        """Open the input stream; raises :class:`DeviceError` when there is no usable input."""
        if self._stream is not None:
            return
        sd = _sounddevice()
        try:
            stream = sd.InputStream(
                device=self.device, samplerate=self.samplerate, channels=self.channels,
                blocksize=self.blocksize, dtype="float32", latency=self.latency, callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as e:
            raise DeviceError(f"{self._label()}: cannot open at {self.samplerate} Hz, {self.channels} ch: {e}") from e
        self._thread = threading.Thread(target=self._run, name=f"mic:{self.name}", daemon=True)
        self._thread.start()
        try:
            stream.start()
        except sd.PortAudioError as e:
            stream.close()
            self._queue.put(None)
            self._thread.join(timeout=2.0)
            self._thread = None
            raise DeviceError(f"{self._label()}: cannot start: {e}") from e
        self._stream = stream
        with self._lock:
            self._health.connected = True
            self._health.error = None

    def stop(self) -> None:
        """Stop and close the stream. Idempotent."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=2.0)
            self._thread = None
        with self._lock:
            self._health.connected = False

    # PortAudio's thread: only timestamp and hand over; no subscriber code runs here.
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = host_now()
        stream_now = float(time_info.currentTime)
        adc = float(time_info.inputBufferAdcTime)
        if stream_now > 0 and adc > 0:
            self._fit.update(stream_now, now)
            t0 = float(self._fit.to_host(adc))
        else:
            # This host API gives no ADC time: the block ended about now.
            self._adc_missing = True
            t0 = now - frames / self.samplerate
        dropped = gap = 0
        if self._next_t is not None:
            err = t0 - self._next_t
            if abs(err) <= self.continuity_tol_s:
                t0 = self._next_t + 0.05 * err  # slew: follows drift, keeps spacing ~1/rate
            elif err > 0:
                gap, dropped = 1, int(round(err * self.samplerate))
            else:
                t0 = self._next_t  # time cannot run backwards within one stream
        self._next_t = t0 + frames / self.samplerate
        if status.input_overflow:
            self._overflows += 1
        try:
            self._queue.put_nowait((t0, indata.copy(), dropped, gap, err if gap else 0.0))
        except queue.Full:
            with self._lock:
                self._health.dropped += frames

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            t0, data, dropped, gap, gap_s = item
            n = len(data)
            ts = t0 + np.arange(n, dtype=np.float64) / self.samplerate
            with self._lock:
                h = self._health
                h.dropped += dropped
                h.gaps += gap
                if gap:
                    h.extra["last_gap_s"] = gap_s
                h.extra["overflows"] = self._overflows
                h.extra["timing"] = "host" if self._adc_missing else "adc"
                h.clock_offset = self._fit.offset
                h.clock_drift_ppm = self._fit.drift_ppm
                h.late += int(host_now() - ts[-1] > 0.5)
            self._meter.add(float(ts[-1]), n)
            with self._lock:
                self._health.measured_rate = self._meter.rate()
            self._emit(Chunk("audio", ts, data, self.name))
