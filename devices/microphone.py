"""Microphone capture through PortAudio (``sounddevice.InputStream``).

Every sample gets a host-monotonic timestamp. Two timing modes:

* ``timing="callback"`` (default): sample ``k`` of a run is stamped from the lower envelope
  of the callback times against the sample count (:class:`devices.clock.RateSmoother`): the
  callback time is a hard upper bound for the block's last sample, and the envelope follows
  the earliest deliveries, so bursty delivery does not shift the stamps and the spacing is
  1/samplerate (drift absorbed by the fit).
* ``timing="adc"``: PortAudio's ``inputBufferAdcTime``, mapped from the stream clock onto the
  host clock with a :class:`devices.clock.ClockFit` fed by (``currentTime``, ``host_now()``)
  pairs, kept sample-continuous and slewed; a block that would end after its callback is
  moved back (``extra["clamped_blocks"]``).

Measured through PulseAudio, the ADC time jitters by a few ms and is sometimes later than
the callback itself (which no sample can be), hence the default. In both modes the ADC clock
detects discontinuities: a block starting more than ``continuity_tol_s`` after the previous
one ended, or an ``input_overflow``, starts a new run and counts a gap and the dropped
samples. ``extra["input_latency_s"]`` is PortAudio's reported input latency.

``sounddevice`` is imported lazily: PortAudio lists devices when it is initialised, so a sound
server started after this module was imported is still seen.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from devices.base import Chunk, DeviceError, SourceBase, host_now
from devices.clock import ClockFit, RateMeter, RateSmoother


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
        timing: ``"callback"`` or ``"adc"`` (see the module docstring).
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
        timing: str = "callback",
    ) -> None:
        super().__init__(name)
        if samplerate <= 0 or channels <= 0:
            raise ValueError(f"microphone: samplerate and channels must be positive, got {samplerate}, {channels}")
        if timing not in ("callback", "adc"):
            raise ValueError(f"microphone: timing must be 'callback' or 'adc', got {timing!r}")
        self.timing = timing
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
        self._next_adc: float | None = None
        block_s = self.blocksize / self.samplerate
        self._smoother = RateSmoother(self.samplerate, gap_threshold_s=max(0.05, 2.5 * block_s))
        self._overflows = 0
        self._adc_missing = False
        self._input_latency = 0.0
        self._clamped = 0
        with self._lock:
            self._health.nominal_rate = float(self.samplerate)
            self._health.extra.update(device=device, overflows=0, timing=timing, last_gap_s=0.0,
                                      input_latency_s=0.0, clamped_blocks=0)

    def _label(self) -> str:
        return f"microphone {self.device if self.device is not None else 'default'}"

    def start(self) -> None:
        """Open the input stream; raises :class:`DeviceError` when there is no usable input."""
        if self._stream is not None:
            return
        sd = _sounddevice()
        self._next_t = self._next_adc = None
        self._smoother.restart()
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
        sr = self.samplerate
        stream_now = float(time_info.currentTime)
        adc = float(time_info.inputBufferAdcTime)
        adc_t0: float | None = None
        if stream_now > 0 and adc > 0:
            self._fit.update(stream_now, now)
            adc_t0 = float(self._fit.to_host(adc))
            self._input_latency = stream_now - adc
        else:
            self._adc_missing = True
        # A discontinuity: the ADC clock says this block does not follow the previous one.
        gap_s = 0.0
        if adc_t0 is not None and self._next_adc is not None:
            err = adc_t0 - self._next_adc
            if err > self.continuity_tol_s:
                gap_s = err
        if status.input_overflow:
            self._overflows += 1
            gap_s = max(gap_s, 1.0 / sr)
        self._next_adc = None if adc_t0 is None else adc_t0 + frames / sr
        if self.timing == "adc" and adc_t0 is not None:
            ts = self._adc_stamps(adc_t0, frames, now, gap_s > 0)
        else:
            if gap_s > 0:
                self._smoother.restart()
            ts = self._smoother.stamp(frames, now)
            if self._smoother.gaps:  # late by more than its threshold: a hole it saw itself
                gap_s = max(gap_s, self._smoother.last_gap_s)
                self._smoother.gaps = 0
        try:
            self._queue.put_nowait((ts, indata.copy(), gap_s))
        except queue.Full:
            with self._lock:
                self._health.dropped += frames

    def _adc_stamps(self, t0: float, frames: int, now: float, discontinuity: bool) -> np.ndarray:
        sr = self.samplerate
        if self._next_t is not None and not discontinuity:
            err = t0 - self._next_t
            # Slew: follows drift; at most half a sample per block keeps the spacing
            # within 1/rate ± 0.5/rate, so time never stalls or runs backwards.
            limit = 0.5 / sr
            t0 = self._next_t + min(max(0.05 * err, -limit), limit)
        # No sample is stamped after the callback received it (the ADC time is an estimate).
        latest = now - (frames - 1) / sr
        if t0 > latest:
            t0 = latest
            self._clamped += 1
        if self._next_t is not None:
            t0 = max(t0, self._next_t - 0.5 / sr)  # and time never runs backwards
        self._next_t = t0 + frames / sr
        return t0 + np.arange(frames, dtype=np.float64) / sr

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            ts, data, gap_s = item
            with self._lock:
                h = self._health
                if gap_s > 0:
                    h.gaps += 1
                    h.dropped += int(round(gap_s * self.samplerate))
                    h.extra["last_gap_s"] = gap_s
                h.extra["overflows"] = self._overflows
                h.extra["input_latency_s"] = self._input_latency
                h.extra["clamped_blocks"] = self._clamped
                h.extra["timing"] = "callback" if (self.timing == "callback" or self._adc_missing) else "adc"
                h.clock_offset = self._fit.offset
                h.clock_drift_ppm = self._fit.drift_ppm
                h.late += int(host_now() - ts[-1] > 0.5)
            self._meter.add(float(ts[-1]), len(ts))
            with self._lock:
                self._health.measured_rate = self._meter.rate()
            self._emit(Chunk("audio", ts, data, self.name))
