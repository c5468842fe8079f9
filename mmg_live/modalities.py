"""One spec and ONE preprocessing per modality, shared by the trainer and the live engine.

Every function here sees a single time window of raw samples with their timestamps, never a
whole trial, so what training computes is exactly what live inference can compute:

* video: ``[N, H, W, C]`` uint8 frames (C = 1 grayscale/depth or 3 RGB) → ``[C, T, S, S]`` float
  (T frames sampled uniformly over the window, short side resized to S, centre crop, normalised);
* audio: ``[N]`` or ``[N, C]`` float waveform at any rate → 16 kHz → 128-bin log-mel
  (``torchaudio.compliance.kaldi.fbank``) ``[F, 128]``, normalised;
* imu: ``[N, 6]`` accel x,y,z then gyro x,y,z in declared units → model rate, model units
  (g, deg/s) → ``[6, R]`` normalised;
* pose: ``[N, 33, 4]`` BlazePose world landmarks (x, y, z metres, visibility; NaN rows where no
  person was found) → chosen joints centred on the mid-hip, scaled by the torso length, at the
  model rate, with velocities → ``[J * F, R]``.

Windows are half-open time intervals ``(t0, t1]`` in the same clock as the timestamps. Parts of
the window that the samples do not cover are filled by edge replication (video, imu) or
silence (audio); a window covered less than ``min_coverage`` is an error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mmg_common import MODALITIES


G = 9.80665  # m/s^2 per g
ACCEL_UNITS = {"g": 1.0, "m/s2": 1.0 / G, "m/s^2": 1.0 / G}
GYRO_UNITS = {"deg/s": 1.0, "rad/s": 180.0 / math.pi}


class PreprocessError(ValueError):
    """Raw input a modality cannot turn into a model tensor; the message says what and why."""


@dataclass(frozen=True)
class VideoSpec:
    """Video clip geometry and normalisation.

    ``color`` is ``"gray"`` (1 channel: grayscale or depth rendered to 8 bit) or ``"rgb"``.
    ``mean``/``std`` apply to pixels scaled to [0, 1]. ``crop`` is ``"center"`` (short side
    resized to ``size``, centre crop) or ``"foreground"`` (for depth with a zeroed background:
    the square around every non-zero pixel of the window's sampled frames, with a 10 % margin;
    the centre crop when nothing or everything is foreground). ``trained_on`` is what kind of
    camera the video encoder learned from (``"depth"``, ``"colour"``; ``""`` unknown), set by
    the trainer from the data set, so the live engine never feeds a colour camera into a
    depth-trained encoder (see :data:`VIDEO_KINDS`).
    """

    frames: int = 16
    size: int = 64
    color: str = "gray"
    window_s: float = 3.0
    crop: str = "center"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    min_coverage: float = 0.25
    trained_on: str = ""

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def output_shape(self) -> tuple[int, ...]:
        return (self.channels, self.frames, self.size, self.size)


@dataclass(frozen=True)
class AudioSpec:
    """Log-mel filterbank front end (Kaldi-compatible, as in AST).

    ``normalize`` says what happens to the log-mel before the fixed ``(x - mean) / (2 std)``:

    * ``"global"`` (default): nothing; ``mean``/``std`` are dataset statistics (as in AST);
    * ``"window"``: cepstral mean and variance normalisation per mel bin over the window's own
      frames, ``(x - mean_t x) / (std_t x + 1e-5)``, so level and channel colouring drop out.
      Computed from the one window alone, as live inference sees it; ``mean``/``std`` then
      hold the training statistics of the normalised values;
    * ``"window_floorpad"``: as ``"window"``, after replacing every frame that reads silence
      padding (samples the input does not cover, e.g. before a clip shorter than the window)
      by the per-bin minimum of the covered frames, so padding looks like the recording's own
      background (as a live microphone's would) instead of digital silence.

    ``high_freq_hz`` is the upper edge of the mel filterbank (0: the Nyquist frequency). A band
    limit below the input's own (4000 for 8 kHz recordings such as FSDD) keeps bins that would
    hold only resampling residue out of the features, for training and live input alike.

    ``frontend`` is what the window becomes (:data:`AUDIO_FRONTENDS`):

    * ``"kaldi_fbank"`` (default): the normalised log-mel ``[num_frames, n_mels]`` above;
    * ``"speech_embedding"``: the frozen pretrained speech embedding of
      :mod:`mmg_live.speech_embedding` (EfficientWord-Net's ResNet-50, ONNX) of the same 16 kHz
      window, ``[2048]``, then ``(x - mean) / (2 std)``. Its input is fixed: ``window_s=1.5``,
      ``sample_rate=16000``, ``normalize="global"``, ``high_freq_hz=0``; ``n_mels`` and the frame
      fields do not apply (the embedding computes its own 64-filter log filterbank).
    """

    sample_rate: int = 16000
    n_mels: int = 128
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    window_s: float = 1.0
    mean: float = -4.27
    std: float = 4.57
    min_coverage: float = 0.1
    normalize: str = "global"
    high_freq_hz: float = 0.0
    frontend: str = "kaldi_fbank"

    @property
    def num_frames(self) -> int:
        """Time steps of the model input: fbank frames, or 1 (one embedding per window)."""
        if self.frontend == "speech_embedding":
            return 1
        return int(round(self.window_s * 1000.0 / self.frame_shift_ms))

    def output_shape(self) -> tuple[int, ...]:
        if self.frontend == "speech_embedding":
            from mmg_live.speech_embedding import EMBED_DIM

            return (EMBED_DIM,)
        return (self.num_frames, self.n_mels)


@dataclass(frozen=True)
class ImuSpec:
    """Accel + gyro at a fixed model rate, in g and deg/s, normalised per channel.

    ``frame``: ``"sensor"`` keeps the sensor's axes; ``"gravity"`` turns each window (accel and
    gyro together) by the least rotation that takes its mean acceleration onto
    :data:`GRAVITY_AXIS`, so how the sensor is tilted on the body drops out and what is left of
    the mounting is a turn about that axis (which training can cover with ``imu_yaw``).
    """

    rate: float = 50.0
    window_s: float = 3.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0, 100.0, 100.0, 100.0)
    min_coverage: float = 0.25
    frame: str = "sensor"

    channels: int = field(default=6, init=False)

    @property
    def num_samples(self) -> int:
        return int(round(self.window_s * self.rate))

    def output_shape(self) -> tuple[int, ...]:
        return (self.channels, self.num_samples)


#: Body joints a pose model reads by default: nose, shoulders, elbows, wrists, index fingers,
#: hips, knees, ankles (BlazePose indices; the face and feet details add only noise).
DEFAULT_POSE_JOINTS: tuple[int, ...] = (0, 11, 12, 13, 14, 15, 16, 19, 20, 23, 24, 25, 26, 27, 28)


@dataclass(frozen=True)
class PoseSpec:
    """Body landmarks at a fixed model rate, in torso lengths around the mid-hip.

    Per joint the features are x, y, z, then (``velocity``) their rate of change in torso
    lengths per ``velocity_scale_s`` seconds, then (``visibility``) the landmark's visibility.
    Frames without a person (NaN) do not count as covering the window.
    """

    rate: float = 15.0
    window_s: float = 3.0
    joints: tuple[int, ...] = DEFAULT_POSE_JOINTS
    velocity: bool = True
    visibility: bool = True
    velocity_scale_s: float = 0.25
    min_coverage: float = 0.25

    @property
    def features_per_joint(self) -> int:
        return 3 + (3 if self.velocity else 0) + (1 if self.visibility else 0)

    @property
    def channels(self) -> int:
        return len(self.joints) * self.features_per_joint

    @property
    def num_samples(self) -> int:
        return int(round(self.window_s * self.rate))

    def output_shape(self) -> tuple[int, ...]:
        return (self.channels, self.num_samples)


Spec = VideoSpec | AudioSpec | ImuSpec | PoseSpec
AUDIO_NORMALIZE: tuple[str, ...] = ("global", "window", "window_floorpad")
IMU_FRAMES = ("sensor", "gravity")  #: ImuSpec.frame values
AUDIO_FRONTENDS: tuple[str, ...] = ("kaldi_fbank", "speech_embedding")
_SPEC_TYPES: dict[str, type] = {"video": VideoSpec, "audio": AudioSpec, "imu": ImuSpec, "pose": PoseSpec}


#: Opt-in spec fields added after checkpoints existed: left out of the dict while at their default,
#: so a spec that does not use them serialises (and hashes, for the window cache) as before.
_OPTIONAL_FIELDS: dict[str, Any] = {"normalize": "global", "high_freq_hz": 0.0, "trained_on": "",
                                    "frontend": "kaldi_fbank", "frame": "sensor"}
#: What a camera delivers (a source's ``video_kind``) and what a video encoder learned (``trained_on``).
VIDEO_KINDS: tuple[str, ...] = ("colour", "depth")


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """JSON-ready dict of a spec (tuples become lists; opt-in fields only when set)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()
            if k != "channels" and not (k in _OPTIONAL_FIELDS and v == _OPTIONAL_FIELDS[k])}


def spec_from_dict(modality: str, values: Mapping[str, Any]) -> Spec:
    """Rebuild a spec from :func:`spec_to_dict` output; unknown keys are an error."""
    if modality not in _SPEC_TYPES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    cls = _SPEC_TYPES[modality]
    allowed = {f.name for f in fields(cls) if f.init}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"{modality} spec: unknown keys {sorted(unknown)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
    spec = cls(**kwargs)
    _validate_spec(modality, spec)
    return spec


def _validate_spec(modality: str, spec: Spec) -> None:
    if isinstance(spec, VideoSpec):
        if spec.color not in ("gray", "rgb"):
            raise ValueError(f"video spec: color must be 'gray' or 'rgb', got {spec.color!r}")
        if spec.trained_on not in ("", *VIDEO_KINDS):
            raise ValueError(f"video spec: trained_on must be one of {VIDEO_KINDS} (or empty), got {spec.trained_on!r}")
        if spec.crop not in ("center", "foreground"):
            raise ValueError(f"video spec: crop must be 'center' or 'foreground', got {spec.crop!r}")
        if len(spec.mean) != spec.channels or len(spec.std) != spec.channels:
            raise ValueError(f"video spec: mean/std need {spec.channels} values for color={spec.color!r}")
    if isinstance(spec, AudioSpec) and spec.normalize not in AUDIO_NORMALIZE:
        raise ValueError(f"audio spec: normalize must be one of {AUDIO_NORMALIZE}, got {spec.normalize!r}")
    if (isinstance(spec, AudioSpec) and spec.high_freq_hz != 0.0
            and not 20.0 < spec.high_freq_hz <= spec.sample_rate / 2):
        raise ValueError(f"audio spec: high_freq_hz must be 0 (Nyquist) or in (20, {spec.sample_rate / 2:g}], "
                         f"got {spec.high_freq_hz}")
    if isinstance(spec, AudioSpec):
        _validate_audio_frontend(spec)
    if isinstance(spec, PoseSpec) and (not spec.joints or not all(0 <= j < 33 for j in spec.joints)):
        raise ValueError(f"pose spec: joints must be BlazePose indices 0-32, got {spec.joints}")
    if isinstance(spec, ImuSpec) and (len(spec.mean) != 6 or len(spec.std) != 6):
        raise ValueError("imu spec: mean/std need 6 values (accel xyz, gyro xyz)")
    if isinstance(spec, ImuSpec) and spec.frame not in IMU_FRAMES:
        raise ValueError(f"imu spec: frame must be one of {IMU_FRAMES}, got {spec.frame!r}")
    if spec.window_s <= 0:
        raise ValueError(f"{modality} spec: window_s must be positive")


def _validate_audio_frontend(spec: AudioSpec) -> None:
    if spec.frontend not in AUDIO_FRONTENDS:
        raise ValueError(f"audio spec: frontend must be one of {AUDIO_FRONTENDS}, got {spec.frontend!r}")
    if spec.frontend == "speech_embedding":
        from mmg_live.speech_embedding import SAMPLE_RATE, WINDOW_S

        if spec.window_s != WINDOW_S or spec.sample_rate != SAMPLE_RATE:
            raise ValueError(f"audio spec: frontend 'speech_embedding' reads {WINDOW_S} s at {SAMPLE_RATE} Hz, "
                             f"got window_s={spec.window_s}, sample_rate={spec.sample_rate}")
        if spec.normalize != "global" or spec.high_freq_hz != 0.0:
            raise ValueError("audio spec: frontend 'speech_embedding' takes normalize='global' and high_freq_hz=0 "
                             "(the embedding computes its own filterbank)")


def default_window(timestamps: np.ndarray, window_s: float) -> tuple[float, float]:
    """The newest window ``(t_last - window_s, t_last]`` — what the live engine asks for."""
    t1 = float(timestamps[-1])
    return (t1 - window_s, t1)


def _check_common(modality: str, data: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(data)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if data.ndim == 0 or len(data) == 0:
        raise PreprocessError(f"{modality}: no samples")
    if timestamps.ndim != 1 or len(timestamps) != len(data):
        raise PreprocessError(f"{modality}: {len(timestamps)} timestamps for {len(data)} samples")
    if not np.all(np.isfinite(timestamps)):
        raise PreprocessError(f"{modality}: timestamps contain NaN or inf")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise PreprocessError(f"{modality}: {bad} NaN/inf values in the input")
    return data, timestamps


def window_coverage(timestamps: np.ndarray, window: tuple[float, float], rate: float) -> float:
    """Fraction in ``[0, 1]`` of the window ``(t0, t1]`` that the samples inside it cover.

    Each sample stands for one period ``1 / rate`` (``rate``: the stream's nominal rate, or
    one estimated from the timestamps), but the samples never cover more than the span they
    occupy plus one period, so a burst squeezed into a short span counts as short. This is the
    one coverage measure: the live engine's liveness and preprocessing's minimum both use it.
    """
    t0, t1 = window
    if t1 <= t0 or rate <= 0:
        return 0.0
    timestamps = np.asarray(timestamps, dtype=np.float64)
    lo = int(np.searchsorted(timestamps, t0, side="right"))
    hi = int(np.searchsorted(timestamps, t1, side="right"))
    if hi <= lo:
        return 0.0
    period = 1.0 / rate
    span = float(timestamps[hi - 1] - timestamps[lo]) + period
    return float(min(1.0, min((hi - lo) * period, span) / (t1 - t0)))


def require_coverage(modality: str, timestamps: np.ndarray, window: tuple[float, float], rate: float,
                     min_coverage: float) -> tuple[int, int]:
    """Index range ``[lo, hi)`` of the samples inside the window ``(t0, t1]``.

    The one check of whether a window is usable: raises :class:`PreprocessError` (the message
    says ``too short`` and how much of the window the samples cover) when no sample is inside
    or :func:`window_coverage` is below ``min_coverage``.
    """
    t0, t1 = window
    if t1 <= t0:
        raise PreprocessError(f"{modality}: empty window ({t0}, {t1}]")
    lo = int(np.searchsorted(timestamps, t0, side="right"))
    hi = int(np.searchsorted(timestamps, t1, side="right"))
    covered = window_coverage(timestamps, window, rate)
    # 90 samples at 50 Hz in 3 s is 60 %, not 59.99...
    if hi <= lo or covered + 1e-9 < min_coverage:
        raise PreprocessError(
            f"{modality} input too short: {hi - lo} samples; covers {covered:.0%} of its "
            f"{t1 - t0:g} s window (need {min_coverage:.0%})"
        )
    return lo, hi


def _estimate_rate(timestamps: np.ndarray) -> float:
    if len(timestamps) < 2:
        return 0.0
    span = float(timestamps[-1] - timestamps[0])
    return (len(timestamps) - 1) / span if span > 0 else 0.0


# ---------------------------------------------------------------------------------------- video

def _frames_to_float(frames: np.ndarray, spec: VideoSpec) -> torch.Tensor:
    """uint8 ``[T,H,W,C]`` → float ``[T,C,H,W]`` in [0,1], converted to the spec's colour."""
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise PreprocessError(
            f"video: expected frames [N,H,W,1] or [N,H,W,3], got shape {tuple(frames.shape)}"
        )
    if frames.dtype != np.uint8:
        raise PreprocessError(f"video: expected uint8 frames, got {frames.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    if spec.channels == 1 and x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    elif spec.channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x


def video_frame_indices(timestamps: np.ndarray, spec: VideoSpec,
                        window: tuple[float, float] | None = None) -> np.ndarray:
    """Indices into ``timestamps`` of the ``spec.frames`` frames a window samples (the frame
    nearest each of ``spec.frames`` evenly spaced instants); raises :class:`PreprocessError`
    when the frames inside the window cover too little of it.

    The live engine calls it on a buffered window's timestamps to copy only these frames.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1 or len(timestamps) == 0:
        raise PreprocessError("video: no samples")
    if not np.all(np.isfinite(timestamps)):
        raise PreprocessError("video: timestamps contain NaN or inf")
    window = window or default_window(timestamps, spec.window_s)
    rate = _estimate_rate(timestamps) or spec.frames / spec.window_s
    lo, hi = require_coverage("video", timestamps, window, rate, spec.min_coverage)
    t0, t1 = window
    centres = t0 + (np.arange(spec.frames) + 0.5) * (t1 - t0) / spec.frames
    ts_in = timestamps[lo:hi]
    idx = np.clip(np.searchsorted(ts_in, centres), 1, max(len(ts_in) - 1, 1))
    if len(ts_in) > 1:
        left_closer = (centres - ts_in[idx - 1]) <= (ts_in[idx] - centres)
        idx = np.where(left_closer, idx - 1, idx)
    else:
        idx = np.zeros_like(idx)
    return lo + idx


def preprocess_video(frames: np.ndarray, timestamps: np.ndarray, spec: VideoSpec,
                     window: tuple[float, float] | None = None) -> torch.Tensor:
    """Frames of one window → ``[C, T, S, S]`` float tensor (see module docstring)."""
    frames, timestamps = _check_common("video", frames, timestamps)
    return preprocess_video_frames(frames[video_frame_indices(timestamps, spec, window)], spec)


def preprocess_video_frames(sampled: np.ndarray, spec: VideoSpec) -> torch.Tensor:
    """The ``spec.frames`` frames a window sampled (:func:`video_frame_indices`) → ``[C, T, S, S]``.

    Crops on the uint8 frames before converting to float, so only the crop is ever float.
    """
    if sampled.ndim == 3:
        sampled = sampled[..., None]
    if sampled.ndim != 4 or sampled.shape[-1] not in (1, 3):
        raise PreprocessError(
            f"video: expected frames [N,H,W,1] or [N,H,W,3], got shape {tuple(sampled.shape)}"
        )
    if spec.crop == "foreground":
        top, left, side = _foreground_square(sampled)
        sampled = sampled[:, top:top + side, left:left + side]
    x = _frames_to_float(sampled, spec)
    h, w = x.shape[-2:]
    scale = spec.size / min(h, w)
    new_h, new_w = max(spec.size, round(h * scale)), max(spec.size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - spec.size) // 2, (new_w - spec.size) // 2
    x = x[..., top:top + spec.size, left:left + spec.size]
    mean = torch.tensor(spec.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype).view(1, -1, 1, 1)
    x = (x - mean) / std
    return x.permute(1, 0, 2, 3).contiguous()


def _foreground_square(sampled: np.ndarray) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square around the non-zero pixels of ``sampled [T,H,W,C]``
    (see VideoSpec); the whole frame when nothing or everything is foreground."""
    mask = (sampled > 0).any(axis=(0, 3))
    h, w = mask.shape
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0 or (len(rows) > 0.95 * h and len(cols) > 0.95 * w):
        return 0, 0, max(h, w)  # slicing past the edge keeps the whole frame
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = min(int(round(max(y1 - y0, x1 - x0) * 1.1)), h, w)
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    top = int(min(max(round(cy - side / 2.0), 0), h - side))
    left = int(min(max(round(cx - side / 2.0), 0), w - side))
    return top, left, side


# ---------------------------------------------------------------------------------------- audio

def _window_waveform(wave: np.ndarray, timestamps: np.ndarray, window: tuple[float, float],
                     rate: float) -> np.ndarray:
    """Samples inside the window placed on a silent canvas by their timestamps."""
    return _placed_waveform(wave, timestamps, window, rate)[0]


def _placed_waveform(wave: np.ndarray, timestamps: np.ndarray, window: tuple[float, float],
                     rate: float) -> tuple[np.ndarray, int, int]:
    """The canvas of :func:`_window_waveform` and the ``[start, end)`` sample range the input covers."""
    t0, t1 = window
    n_out = int(round((t1 - t0) * rate))
    canvas = np.zeros(n_out, dtype=np.float32)
    lo = int(np.searchsorted(timestamps, t0, side="right"))
    hi = int(np.searchsorted(timestamps, t1, side="right"))
    if hi <= lo:
        return canvas, 0, 0
    start = int(round((timestamps[lo] - t0) * rate)) - 1
    start = min(max(start, 0), n_out)
    piece = wave[lo:hi][: n_out - start]
    canvas[start:start + len(piece)] = piece
    return canvas, start, start + len(piece)


def preprocess_audio(wave: np.ndarray, timestamps: np.ndarray, spec: AudioSpec,
                     window: tuple[float, float] | None = None,
                     sample_rate: float | None = None) -> torch.Tensor:
    """Waveform of one window at any rate → normalised log-mel ``[F, n_mels]``, or with
    ``spec.frontend == "speech_embedding"`` the normalised speech embedding ``[2048]`` of the same
    16 kHz window (see :class:`AudioSpec`).

    ``sample_rate`` is the input's rate; when omitted it is estimated from the timestamps.
    """
    from torchaudio.compliance import kaldi
    import torchaudio.functional as AF

    wave, timestamps = _check_common("audio", wave, timestamps)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    elif wave.ndim != 1:
        raise PreprocessError(f"audio: expected [N] or [N,channels], got shape {tuple(wave.shape)}")
    if not np.issubdtype(wave.dtype, np.floating):
        raise PreprocessError(f"audio: expected float samples in [-1,1], got {wave.dtype}")
    rate = float(sample_rate) if sample_rate else _estimate_rate(timestamps)
    if rate <= 0:
        raise PreprocessError("audio: cannot tell the sample rate (pass sample_rate=)")
    window = window or default_window(timestamps, spec.window_s)
    require_coverage("audio", timestamps, window, rate, spec.min_coverage)
    canvas, cov0, cov1 = _placed_waveform(wave.astype(np.float32, copy=False), timestamps, window, rate)
    x = torch.from_numpy(canvas)
    in_rate = int(round(rate))
    if in_rate != spec.sample_rate:
        x = AF.resample(x, in_rate, spec.sample_rate)
    if spec.frontend == "speech_embedding":
        return _speech_embedding(x, spec)
    frame_len = int(spec.sample_rate * spec.frame_length_ms / 1000)
    if x.numel() < frame_len:
        raise PreprocessError(f"audio: window shorter than one {spec.frame_length_ms} ms frame")
    fbank = kaldi.fbank(
        x.unsqueeze(0), sample_frequency=spec.sample_rate, num_mel_bins=spec.n_mels,
        frame_shift=spec.frame_shift_ms, frame_length=spec.frame_length_ms,
        htk_compat=True, window_type="hanning", use_energy=False, dither=0.0, high_freq=spec.high_freq_hz,
    )
    target = spec.num_frames
    n_computed = fbank.shape[0]
    if fbank.shape[0] < target:
        fbank = F.pad(fbank, (0, 0, 0, target - fbank.shape[0]), value=float(fbank.min()))
    fbank = fbank[:target]
    if spec.normalize == "window_floorpad":
        # frames that read any sample the input did not cover (silence padding) → the window's
        # own per-bin floor, as a live microphone's background would look
        scale = spec.sample_rate / in_rate
        shift = int(spec.sample_rate * spec.frame_shift_ms / 1000)
        starts = torch.arange(target) * shift
        covered = (starts >= cov0 * scale) & (starts + frame_len <= cov1 * scale) & (torch.arange(target) < n_computed)
        if bool(covered.any()) and not bool(covered.all()):
            fbank = torch.where(covered.unsqueeze(1), fbank, fbank[covered].amin(dim=0, keepdim=True))
    if spec.normalize in ("window", "window_floorpad"):
        fbank = window_normalize(fbank)
    return ((fbank - spec.mean) / (2.0 * spec.std)).contiguous()


def _speech_embedding(x: torch.Tensor, spec: AudioSpec) -> torch.Tensor:
    """The 16 kHz window ``x`` → normalised speech embedding ``[2048]`` (the frozen ONNX model)."""
    from mmg_live.speech_embedding import NUM_SAMPLES, embed_waveform

    wave = x.numpy()
    if wave.shape[0] != NUM_SAMPLES:  # resampling may round the length by a sample
        wave = np.pad(wave, (NUM_SAMPLES - wave.shape[0], 0)) if wave.shape[0] < NUM_SAMPLES \
            else wave[wave.shape[0] - NUM_SAMPLES:]
    emb = torch.from_numpy(embed_waveform(wave))
    return ((emb - spec.mean) / (2.0 * spec.std)).contiguous()


def window_normalize(fbank: torch.Tensor) -> torch.Tensor:
    """Per-mel-bin mean and variance normalisation over the frames of one window ``[F, n_mels]``."""
    mu = fbank.mean(dim=0, keepdim=True)
    sd = fbank.std(dim=0, unbiased=False, keepdim=True)
    return (fbank - mu) / (sd + 1e-5)


# ------------------------------------------------------------------------------------------ imu

#: Where ``ImuSpec(frame="gravity")`` puts each window's mean acceleration: -x, the way UTD-MHAD's
#: wrist sensor reads gravity with the arm hanging.
GRAVITY_AXIS = (-1.0, 0.0, 0.0)


def rotation_onto(v: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least 3×3 rotation taking the direction of ``v`` onto that of ``target`` (about their
    common normal; for opposite directions, a half turn about an axis normal to both)."""
    a = np.asarray(v, dtype=np.float64) / max(float(np.linalg.norm(v)), 1e-12)
    b = np.asarray(target, dtype=np.float64) / float(np.linalg.norm(target))
    axis = np.cross(a, b)
    sin, cos = float(np.linalg.norm(axis)), float(a @ b)
    if sin < 1e-9:
        if cos > 0:
            return np.eye(3)
        normal = np.cross(a, np.eye(3)[int(np.argmin(np.abs(a)))])
        normal /= np.linalg.norm(normal)
        return 2.0 * np.outer(normal, normal) - np.eye(3)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]]) / sin
    return np.eye(3) + sin * k + (1.0 - cos) * (k @ k)


def gravity_frame(window: np.ndarray) -> np.ndarray:
    """``[6, R]`` accel (g) + gyro window turned so its mean acceleration lies along :data:`GRAVITY_AXIS`."""
    rotation = rotation_onto(window[:3].mean(axis=1), np.asarray(GRAVITY_AXIS))
    return np.concatenate([rotation @ window[:3], rotation @ window[3:]], axis=0)


def preprocess_imu(samples: np.ndarray, timestamps: np.ndarray, spec: ImuSpec,
                   window: tuple[float, float] | None = None,
                   accel_unit: str = "g", gyro_unit: str = "deg/s") -> torch.Tensor:
    """Accel+gyro samples of one window at any rate → ``[6, R]`` at the model rate, normalised."""
    samples, timestamps = _check_common("imu", samples, timestamps)
    if samples.ndim != 2 or samples.shape[1] != 6:
        raise PreprocessError(
            f"imu: expected [N,6] (accel x,y,z, gyro x,y,z), got shape {tuple(samples.shape)}"
        )
    if accel_unit not in ACCEL_UNITS:
        raise PreprocessError(f"imu: unknown accel unit {accel_unit!r}; use one of {list(ACCEL_UNITS)}")
    if gyro_unit not in GYRO_UNITS:
        raise PreprocessError(f"imu: unknown gyro unit {gyro_unit!r}; use one of {list(GYRO_UNITS)}")
    window = window or default_window(timestamps, spec.window_s)
    in_rate = _estimate_rate(timestamps) or spec.rate
    lo, hi = require_coverage("imu", timestamps, window, in_rate, spec.min_coverage)
    # Keep one neighbour on each side so interpolation at the window edges is exact.
    lo, hi = max(lo - 1, 0), min(hi + 1, len(timestamps))
    ts, x = timestamps[lo:hi], samples[lo:hi].astype(np.float64)
    factor = int(round(in_rate / spec.rate))
    if factor >= 2:
        from scipy.ndimage import uniform_filter1d

        # Box anti-alias filter before decimating (odd length: no delay); edges replicate.
        x = uniform_filter1d(x, size=factor | 1, axis=0, mode="nearest")  # odd: zero phase
    t0, t1 = window
    grid = t0 + (np.arange(spec.num_samples) + 0.5) * (t1 - t0) / spec.num_samples
    out = np.stack([np.interp(grid, ts, x[:, c]) for c in range(6)], axis=0)
    out[:3] *= ACCEL_UNITS[accel_unit]
    out[3:] *= GYRO_UNITS[gyro_unit]
    if spec.frame == "gravity":
        out = gravity_frame(out)
    mean = np.asarray(spec.mean)[:, None]
    std = np.asarray(spec.std)[:, None]
    return torch.from_numpy(((out - mean) / std).astype(np.float32))


# ----------------------------------------------------------------------------------------- pose

_MID_HIP = (23, 24)
_MID_SHOULDER = (11, 12)


def preprocess_pose(landmarks: np.ndarray, timestamps: np.ndarray, spec: PoseSpec,
                    window: tuple[float, float] | None = None) -> torch.Tensor:
    """Landmarks of one window → ``[len(joints) * features_per_joint, R]`` (see :class:`PoseSpec`).

    Each frame is centred on its own mid-hip; the window is scaled by its median torso length
    (mid-shoulder to mid-hip), so the person's size and distance from the camera drop out.
    """
    landmarks = np.asarray(landmarks)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (33, 4):
        raise PreprocessError(f"pose: expected landmarks [N,33,4], got shape {tuple(landmarks.shape)}")
    if len(timestamps) != len(landmarks) or len(landmarks) == 0:
        raise PreprocessError(f"pose: {len(timestamps)} timestamps for {len(landmarks)} frames")
    window = window or default_window(timestamps, spec.window_s)
    in_rate = _estimate_rate(timestamps) or spec.rate
    found = np.isfinite(landmarks).all(axis=(1, 2))
    lo, hi = require_coverage("pose (frames with a person)", timestamps[found], window, in_rate, spec.min_coverage)
    ts = timestamps[found][max(lo - 1, 0):hi + 1]
    frames = landmarks[found][max(lo - 1, 0):hi + 1].astype(np.float64)
    xyz = frames[:, :, :3] - frames[:, _MID_HIP, :3].mean(axis=1, keepdims=True)
    torso = np.linalg.norm(frames[:, _MID_SHOULDER, :3].mean(axis=1) - frames[:, _MID_HIP, :3].mean(axis=1), axis=1)
    xyz /= max(float(np.median(torso)), 1e-3)
    joints = list(spec.joints)
    series = xyz[:, joints, :].reshape(len(ts), -1)
    factor = int(round(in_rate / spec.rate))
    if factor >= 2 and len(ts) > 1:
        from scipy.ndimage import uniform_filter1d

        series = uniform_filter1d(series, size=factor | 1, axis=0, mode="nearest")
    t0, t1 = window
    grid = t0 + (np.arange(spec.num_samples) + 0.5) * (t1 - t0) / spec.num_samples
    position = np.stack([np.interp(grid, ts, series[:, c]) for c in range(series.shape[1])], axis=0)
    parts = [position.reshape(len(joints), 3, -1)]
    if spec.velocity:
        step = (t1 - t0) / spec.num_samples
        velocity = np.gradient(position, step, axis=1) * spec.velocity_scale_s if spec.num_samples > 1 \
            else np.zeros_like(position)
        parts.append(velocity.reshape(len(joints), 3, -1))
    if spec.visibility:
        vis = frames[:, joints, 3]
        parts.append(np.stack([np.interp(grid, ts, vis[:, j]) for j in range(len(joints))], axis=0)[:, None, :])
    out = np.concatenate(parts, axis=1).reshape(spec.channels, spec.num_samples)
    return torch.from_numpy(out.astype(np.float32))


# ------------------------------------------------------------------------------------- dispatch

@dataclass(frozen=True)
class ModalitySpecs:
    """The spec of each modality a model consumes."""

    video: VideoSpec = VideoSpec()
    audio: AudioSpec = AudioSpec()
    imu: ImuSpec = ImuSpec()
    pose: PoseSpec = PoseSpec()

    def __getitem__(self, modality: str) -> Spec:
        if modality not in MODALITIES:
            raise KeyError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        return getattr(self, modality)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {m: spec_to_dict(self[m]) for m in MODALITIES}

    @classmethod
    def from_dict(cls, values: Mapping[str, Mapping[str, Any]]) -> "ModalitySpecs":
        return cls(**{m: spec_from_dict(m, v) for m, v in values.items()})

    def with_stats(self, modality: str, mean: Any, std: Any) -> "ModalitySpecs":
        """A copy with new normalisation statistics for one modality."""
        spec = self[modality]
        if isinstance(spec, AudioSpec):
            new = replace(spec, mean=float(mean), std=float(std))
        else:
            new = replace(spec, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))
        return replace(self, **{modality: new})

    @property
    def max_window_s(self) -> float:
        return max(self[m].window_s for m in MODALITIES)


def preprocess(modality: str, data: np.ndarray, timestamps: np.ndarray, specs: ModalitySpecs,
               window: tuple[float, float] | None = None, **options: Any) -> torch.Tensor:
    """The one entry point: raw window of ``modality`` → model tensor.

    ``window`` defaults to the newest ``spec.window_s`` seconds. For a window ending at ``t1``
    that serves several modalities, each modality uses its own length:
    ``(t1 - spec.window_s, t1]`` (see :func:`modality_window`).
    """
    spec = specs[modality]
    if modality == "video":
        return preprocess_video(data, timestamps, spec, window)
    if modality == "audio":
        return preprocess_audio(data, timestamps, spec, window, **options)
    if modality == "pose":
        return preprocess_pose(data, timestamps, spec, window)
    return preprocess_imu(data, timestamps, spec, window, **options)


def modality_window(specs: ModalitySpecs, modality: str, t_end: float) -> tuple[float, float]:
    """The window a modality reads when the shared window ends at ``t_end``."""
    return (t_end - specs[modality].window_s, t_end)
