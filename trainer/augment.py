"""Training augmentation of model inputs: IMU rotation and noise, video shifts, audio
(time shift, tempo, mel warp, gain, noise, SpecAugment masks).

Each function draws from the generator it is given, and only what the options turn on draws
random numbers, so a recipe gets the same draws as before an option it does not use was added.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmg_live.modalities import GRAVITY_AXIS, PoseSpec
from mmg_live.models.mmg import MMGModel
from trainer.stage_config import Augmentation


def random_rotations(n: int, max_degrees: float, gen: torch.Generator) -> torch.Tensor:
    """``[n, 3, 3]`` rotations about uniformly random axes by angles uniform in ±``max_degrees``."""
    axis = F.normalize(torch.randn(n, 3, generator=gen), dim=1)
    angle = torch.deg2rad(max_degrees * (2 * torch.rand(n, generator=gen) - 1))
    k = torch.zeros(n, 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)  # cross-product matrix of the axis
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3).expand(n, 3, 3) + sin * k + (1 - cos) * (k @ k)  # Rodrigues


def rotations_about(axis: torch.Tensor, n: int, max_degrees: float, gen: torch.Generator) -> torch.Tensor:
    """``[n, 3, 3]`` rotations about the unit ``axis`` by angles uniform in ±``max_degrees``."""
    angle = torch.deg2rad(max_degrees * (2 * torch.rand(n, generator=gen) - 1))
    a = F.normalize(axis.to(torch.float32), dim=0)
    k = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3).expand(n, 3, 3) + sin * k + (1 - cos) * (k @ k)


def rotate_imu(x: torch.Tensor, rotations: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Turn normalised ``[B, 6, R]`` accel+gyro windows by ``rotations [B, 3, 3]`` in physical units.

    The model sees ``(x - mean) / std`` per channel, so the window is un-normalised first (gravity
    turns with the sensor) and normalised again after.
    """
    mean, std = mean.view(1, 6, 1), std.view(1, 6, 1)
    phys = (x * std + mean).view(x.shape[0], 2, 3, x.shape[-1])  # [B, accel|gyro, xyz, R]
    turned = torch.einsum("bij,bkjr->bkir", rotations, phys).reshape(x.shape)
    return (turned - mean) / std


def imu_statistics(model: MMGModel) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The IMU channels' normalisation ``(mean, std)`` the model's inputs were made with, if it has an IMU."""
    spec = model.config.specs.imu if "imu" in model.modalities else None
    if spec is None or len(spec.mean) != 6:
        return None
    return torch.tensor(spec.mean, dtype=torch.float32), torch.tensor(spec.std, dtype=torch.float32)


def pose_spec_of(model: MMGModel) -> PoseSpec | None:
    """The model's pose spec when it encodes pose (the feature layout pose augmentation needs)."""
    return model.config.specs.pose if "pose" in model.modalities else None


def augment_pose(x: torch.Tensor, spec: PoseSpec, rotation_deg: float, noise: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Pose features ``[B, J * F, R]`` (layout of :class:`PoseSpec`) turned about the vertical
    axis (y in MediaPipe's world frame) by angles uniform in ±``rotation_deg`` — positions and
    velocities alike — and positions jittered by Gaussian noise of std ``noise`` (torso lengths)."""
    b, _, r = x.shape
    f = spec.features_per_joint
    joints = x.reshape(b, len(spec.joints), f, r).clone()
    groups = [slice(0, 3)] + ([slice(3, 6)] if spec.velocity else [])
    if rotation_deg > 0:
        angle = torch.deg2rad(rotation_deg * (2 * torch.rand(b, generator=gen) - 1))
        cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
        for g in groups:
            xs, zs = joints[:, :, g.start].clone(), joints[:, :, g.start + 2].clone()
            joints[:, :, g.start] = cos * xs + sin * zs
            joints[:, :, g.start + 2] = -sin * xs + cos * zs
    if noise > 0:
        joints[:, :, 0:3] += noise * torch.randn(joints[:, :, 0:3].shape, generator=gen)
    return joints.reshape(x.shape)


def augment_inputs(inputs: dict[str, torch.Tensor], options: Augmentation, gen: torch.Generator,
                   imu_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                   pose_spec: PoseSpec | None = None) -> dict[str, torch.Tensor]:
    """A training batch's model inputs (per modality) augmented as ``options`` say, in order: IMU
    rotation and yaw (need ``imu_stats``, :func:`imu_statistics`), IMU scale and noise, a video shift,
    pose rotation and jitter (needs ``pose_spec``, :func:`pose_spec_of`), then :func:`augment_audio`."""
    out = dict(inputs)
    if "pose" in out and (options.pose_rotation > 0 or options.pose_noise > 0):
        if pose_spec is None:
            raise ValueError("pose augmentation needs the model's pose spec (pose_spec_of)")
        out["pose"] = augment_pose(out["pose"], pose_spec, options.pose_rotation, options.pose_noise, gen)
    if "imu" in out and options.imu_rotation > 0:
        if imu_stats is None:
            raise ValueError("imu_rotation needs the IMU normalisation statistics (a model with a 6-channel IMU spec)")
        out["imu"] = rotate_imu(out["imu"], random_rotations(len(out["imu"]), options.imu_rotation, gen), *imu_stats)
    if "imu" in out and options.imu_yaw > 0:
        if imu_stats is None:
            raise ValueError("imu_yaw needs the IMU normalisation statistics (a model with a 6-channel IMU spec)")
        turns = rotations_about(torch.tensor(GRAVITY_AXIS), len(out["imu"]), options.imu_yaw, gen)
        out["imu"] = rotate_imu(out["imu"], turns, *imu_stats)
    if "imu" in out and options.imu_noise > 0:
        x = out["imu"]
        scale = 1.0 + 0.1 * (torch.rand(x.shape[0], 1, 1, generator=gen) - 0.5)
        out["imu"] = x * scale + options.imu_noise * torch.randn(x.shape, generator=gen)
    if "video" in out and options.video_shift > 0:
        x = out["video"]
        dy, dx = (torch.randint(-options.video_shift, options.video_shift + 1, (2,), generator=gen)).tolist()
        out["video"] = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if "audio" in out:
        out["audio"] = augment_audio(out["audio"], options, gen)
    return out


def _read_frames(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Frames of ``x`` ``[B, T, F]`` read at positions ``pos`` ``[B, T]`` (linear between frames).

    A position outside the window reads the window's floor (its minimum: the quietest value of
    that recording, as silence padding would after normalisation).
    """
    n_t, n_f = x.shape[1], x.shape[2]
    lo = pos.floor().long()
    w = (pos - lo).unsqueeze(-1).to(x.dtype)
    take = lambda i: torch.gather(x, 1, i.clamp(0, n_t - 1).unsqueeze(-1).expand(-1, -1, n_f))  # noqa: E731
    inside = ((pos >= 0) & (pos <= n_t - 1)).unsqueeze(-1)
    return torch.where(inside, take(lo) * (1 - w) + take(lo + 1) * w, x.amin(dim=(1, 2), keepdim=True))


def augment_audio(x: torch.Tensor, options: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Training augmentation of normalised fbank batches ``[B, frames, mels]``.

    In order: time shift, tempo stretch, mel-axis warp, gain, noise, then SpecAugment frequency
    and time masks.
    Only what ``options`` turn on draws random numbers, so old recipes get the same draws as before.

    A ``[B, D]`` batch is the frozen speech embedding (``frontend="speech_embedding"``), computed
    from the waveform in preprocessing and cached, so no log-mel augmentation can reach it (and
    waveform augmentation before the embedding would need the ResNet re-run each step): only an
    explicit ``audio_noise`` (Gaussian, in the normalised embedding's units) applies; the default
    noise derived from ``imu_noise`` does not, and a log-mel option is an error.
    """
    if x.ndim == 2:
        return _augment_embedding(x, options, gen)
    b, n_t, n_f = x.shape
    if options.audio_shift > 0:
        shifts = torch.randint(-options.audio_shift, options.audio_shift + 1, (b,), generator=gen)
        x = _read_frames(x, torch.arange(n_t).unsqueeze(0) - shifts.unsqueeze(1))
    if options.audio_time_stretch > 0:
        # output frame t reads input frame (T-1) - (T-1-t)·rate: anchored at the window's end (the
        # newest sound), rate > 1 plays faster (a quicker speaker)
        span = math.log1p(options.audio_time_stretch)
        rate = torch.exp(span * (2 * torch.rand(b, generator=gen) - 1))
        x = _read_frames(x, (n_t - 1) - (n_t - 1 - torch.arange(n_t).unsqueeze(0)) * rate.unsqueeze(1))
    if options.audio_freq_warp > 0:
        factor = 1.0 + options.audio_freq_warp * (2 * torch.rand(b, generator=gen) - 1)
        # output bin k reads input bin k / factor (factor > 1: formants move up), edge bin beyond
        pos = (torch.arange(n_f).unsqueeze(0) / factor.unsqueeze(1)).clamp(0, n_f - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=n_f - 1)
        w = (pos - lo).unsqueeze(1)
        x = torch.gather(x, 2, lo.unsqueeze(1).expand(-1, n_t, -1)) * (1 - w) \
            + torch.gather(x, 2, hi.unsqueeze(1).expand(-1, n_t, -1)) * w
    if options.audio_gain > 0:
        x = x + options.audio_gain * (2 * torch.rand(b, 1, 1, generator=gen) - 1)
    noise = 0.5 * options.imu_noise if options.audio_noise is None else options.audio_noise
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=gen)
    keep = torch.ones(b, n_t, n_f, dtype=torch.bool)
    for count, width, size, dim in ((options.freq_masks, options.freq_mask_width, n_f, 2),
                                    (options.time_masks, options.time_mask_width, n_t, 1)):
        if count <= 0 or width <= 0:
            continue
        idx = torch.arange(size)
        for _ in range(count):
            w = torch.randint(0, width + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - w + 1)).long()
            band = (idx.unsqueeze(0) >= start.unsqueeze(1)) & (idx.unsqueeze(0) < (start + w).unsqueeze(1))
            keep &= ~(band.unsqueeze(1) if dim == 2 else band.unsqueeze(2))
    if options.freq_masks > 0 or options.time_masks > 0:
        x = x * keep
    return x



def _augment_embedding(x: torch.Tensor, options: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """See :func:`augment_audio`: the speech embedding ``[B, D]`` takes only explicit ``audio_noise``."""
    log_mel = {"audio_gain": options.audio_gain, "audio_shift": options.audio_shift,
               "audio_freq_warp": options.audio_freq_warp, "audio_time_stretch": options.audio_time_stretch,
               "freq_masks": options.freq_masks, "time_masks": options.time_masks}
    on = sorted(k for k, v in log_mel.items() if v)
    if on:
        raise ValueError(f"audio augmentation {on} works on a log-mel [frames, mels]; the speech embedding "
                         f"front end gives [B, {x.shape[1]}] (set them to 0)")
    if options.audio_noise:
        x = x + options.audio_noise * torch.randn(x.shape, generator=gen)
    return x
