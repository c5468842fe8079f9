"""Training augmentation of model inputs: IMU rotation and noise, video shifts, audio
(time shift, tempo, mel warp, gain, noise, SpecAugment masks).

Each function draws from the generator it is given, and only what the options turn on draws
random numbers, so a recipe gets the same draws as before an option it does not use was added.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def augment_inputs(inputs: dict[str, torch.Tensor], options: Augmentation, gen: torch.Generator,
                   imu_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A training batch's model inputs (per modality) augmented as ``options`` say, in order: IMU
    rotation (needs ``imu_stats``, :func:`imu_statistics`), IMU scale and noise, a video shift,
    then :func:`augment_audio`."""
    out = dict(inputs)
    if "imu" in out and options.imu_rotation > 0:
        if imu_stats is None:
            raise ValueError("imu_rotation needs the IMU normalisation statistics (a model with a 6-channel IMU spec)")
        out["imu"] = rotate_imu(out["imu"], random_rotations(len(out["imu"]), options.imu_rotation, gen), *imu_stats)
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
    """
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

