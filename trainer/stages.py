"""Training stages of MMG: supervised (unimodal or multimodal), unsupervised alignment, meta.

Every stage is one loop over epochs of a :class:`~trainer.windows.WindowSet`; what differs is
which modalities are fed and which losses are summed:

* ``supervised``: CE on the fused logits of ``label_modalities`` + ``unimodal_weight`` × CE of each
  encoder's own head + ``align_weight`` × alignment loss, with per-sample modality dropout. With one
  modality this is the unimodal pre-training.
  ``distill_weight`` × soft-target loss toward the frozen unimodal head of ``distill_from`` (a
  modality seen in training only: privileged information for the labelled modality).
* ``align``: the alignment loss only (no labels): unsupervised multimodal pre-training.
* ``meta``: episodes of N-way K-shot; support embedded with one modality set, queries with
  another; cross-modal prototypical loss (+ optional CE).

A ``centre`` stage trains nothing: it stores each modality's mean unit embedding over every
window of the training clips in the model and, with ``rotate_to``, each other modality's
orthogonal map onto that one (centred mean fusion, see
:meth:`~mmg_live.models.mmg.MMGModel.unit_embedding`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from mmg_live.models.mmg import Encoded, MMGModel
from trainer.data.episodes import EpisodeSampler
from trainer.losses import alignment_loss, cross_entropy, distillation_loss, prototypical_loss
from trainer.windows import WindowSet

STAGE_TYPES = ("supervised", "align", "meta", "centre")


@dataclass
class StageConfig:
    """One stage of a recipe (all fields overridable from the command line)."""

    name: str
    type: str = "supervised"
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_epochs: float = 1.0
    modalities: list[str] = field(default_factory=lambda: ["video", "imu"])
    label_modalities: list[str] | None = None
    modality_dropout: float = 0.0
    ce_weight: float = 1.0
    unimodal_weight: float = 0.5
    align_weight: float = 0.0
    temperature: float = 0.1
    freeze: list[str] = field(default_factory=list)
    # soft targets from another modality's unimodal head (a teacher loaded via ``init``, frozen)
    distill_weight: float = 0.0
    distill_from: str = "imu"
    distill_temperature: float = 2.0
    # The fused classifier learns on detached encoder outputs: the encoders then learn only from
    # their unimodal heads (and alignment/distillation). On UTD-MHAD depth the attention head's CE,
    # which reaches the encoder's tokens without its pooled dropout, made the video encoder fit
    # the training subjects' silhouettes (plain video specialist, one thread, seed 0: 72.8 % with it, 78.0 % without).
    fusion_detach: bool = False
    label_smoothing: float = 0.1
    imu_noise: float = 0.05
    imu_rotation: float = 0.0  # degrees: accel and gyro turned together about a random axis (sensor placement)
    video_shift: int = 4
    # audio ([B, frames, mels] model inputs); defaults keep the old behaviour (noise only)
    audio_noise: float | None = None  # Gaussian noise std; None: 0.5 × imu_noise
    audio_gain: float = 0.0  # random level: + U(-g, g) added to the whole fbank (log-mel: gain)
    audio_shift: int = 0  # random time shift of ±frames, vacated frames filled with the clip's minimum
    audio_freq_warp: float = 0.0  # mel axis stretched by a factor in [1-w, 1+w] (speaker/VTLP-like)
    audio_time_stretch: float = 0.0  # tempo: time axis played faster/slower by a log-uniform factor in [1/(1+s), 1+s]
    freq_masks: int = 0  # SpecAugment: number of frequency masks ...
    freq_mask_width: int = 0  # ... each U{0..width} mel bins, set to 0
    time_masks: int = 0  # number of time masks ...
    time_mask_width: int = 0  # ... each U{0..width} frames, set to 0
    # meta-training
    way: int = 5
    shot: int = 5
    query: int = 5
    episodes: int = 40
    proto_scale: float = 10.0
    cross_group_episodes: bool = False  # queries from one training subject/speaker, support from the others
    # centre: the modality the others are rotated onto (None: centres only)
    rotate_to: str | None = None
    pairs: list[list[list[str]]] = field(default_factory=lambda: [
        [["video", "imu"], ["video", "imu"]], [["video"], ["imu"]], [["imu"], ["video"]],
        [["video", "imu"], ["imu"]], [["video", "imu"], ["video"]],
    ])

    def __post_init__(self) -> None:
        if self.type not in STAGE_TYPES:
            raise ValueError(f"stage {self.name!r}: type must be one of {STAGE_TYPES}, got {self.type!r}")
        if not self.modalities:
            raise ValueError(f"stage {self.name!r}: needs at least one modality")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StageConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"stage {values.get('name', '?')!r}: unknown keys {sorted(unknown)}")
        return cls(**values)


def embed(model: MMGModel, enc: Encoded, modalities: Sequence[str]) -> torch.Tensor:
    """The L2-normalised fused embedding of a modality set: what prototypes are made of."""
    return F.normalize(model.fuse(enc, list(modalities)), dim=-1)


@torch.no_grad()
def training_unit_embeddings(model: MMGModel, data: WindowSet, modalities: Sequence[str],
                             batch_size: int = 64) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Unit-length shared-space embeddings ``[rows, D]`` of every window of every clip (the model in
    eval mode, before any centring) and per-row presence masks; a row is one (window, clip) pair
    and means the same moment in every modality."""
    was_training = model.training
    model.eval()
    device = model.device
    units: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    present_rows: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    try:
        mods = [m for m in modalities if m in data.present]
        usable = torch.stack([data.present[m] for m in mods]).any(0).nonzero().flatten() if mods else []
        for window in range(data.n_windows):
            for start in range(0, len(usable), batch_size):
                inputs, present = data.batch(usable[start:start + batch_size], window, mods)
                enc = model.encode_batch({m: x.to(device) for m, x in inputs.items()},
                                         {m: p.to(device) for m, p in present.items()})
                rows = len(next(iter(present.values())))
                for m in modalities:
                    if m in enc.embeddings:
                        units[m].append(F.normalize(enc.embeddings[m].float(), dim=-1).cpu())
                        present_rows[m].append(enc.present[m].cpu())
                    else:
                        units[m].append(torch.zeros(rows, model.config.embed_dim))
                        present_rows[m].append(torch.zeros(rows, dtype=torch.bool))
    finally:
        model.train(was_training)
    empty = torch.zeros(0, model.config.embed_dim)
    return ({m: torch.cat(v) if v else empty for m, v in units.items()},
            {m: torch.cat(v) if v else torch.zeros(0, dtype=torch.bool) for m, v in present_rows.items()})


def estimate_modality_geometry(model: MMGModel, data: WindowSet, modalities: Sequence[str],
                               rotate_to: str | None = None,
                               batch_size: int = 64) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-modality centres (mean unit embedding over every training window where the modality is
    present) and, with ``rotate_to``, each other modality's orthogonal map onto that modality.

    The map is the orthogonal Procrustes solution ``R = U Vᵀ`` of ``Xᵀ Y = U S Vᵀ`` over the windows
    where both are present (``X``, ``Y``: centred unit embeddings of the modality and of
    ``rotate_to`` of the same moments): the rotation that best lays one modality's cone onto the
    other's. The map itself keeps distances within a modality (only the centring moves them).
    Returns ``(centres, rotations)``; ``rotations`` is empty without ``rotate_to``.
    """
    if rotate_to is not None and rotate_to not in modalities:
        raise ValueError(f"rotate_to {rotate_to!r} is not one of the stage's modalities {list(modalities)}")
    units, present = training_unit_embeddings(model, data, modalities, batch_size)
    missing = [m for m in modalities if not bool(present[m].any())]
    if missing:
        raise ValueError(f"no training window has {missing} present: cannot estimate their centres")
    centres = {m: units[m][present[m]].mean(0) for m in modalities}
    rotations = {}
    if rotate_to is not None:
        target = units[rotate_to] - centres[rotate_to]
        for m in modalities:
            if m == rotate_to:
                continue
            both = present[m] & present[rotate_to]
            if int(both.sum()) < 2:
                raise ValueError(f"fewer than 2 training windows have both {m} and {rotate_to}: "
                                 f"cannot estimate the map between them")
            rotations[m] = orthogonal_map(units[m][both] - centres[m], target[both])
    return centres, rotations


def orthogonal_map(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``R`` minimising ``‖source @ R − target‖`` (orthogonal Procrustes: ``U Vᵀ``
    from the SVD of ``sourceᵀ target``); both ``[rows, D]`` with matching rows."""
    if source.shape != target.shape or source.dim() != 2:
        raise ValueError(f"orthogonal_map needs two [rows, D] tensors of one shape, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")
    u, _, vt = torch.linalg.svd(source.double().T @ target.double())
    return (u @ vt).to(source.dtype)


def _apply_freeze(model: MMGModel, prefixes: Sequence[str]) -> list[torch.nn.Parameter]:
    trainable = []
    for name, param in model.named_parameters():
        frozen = any(name.startswith(p) for p in prefixes)
        param.requires_grad_(not frozen)
        if not frozen:
            trainable.append(param)
    return trainable


def freeze_batch_statistics(model: torch.nn.Module) -> None:
    """Put every BatchNorm layer whose weights are all frozen in eval mode.

    A frozen part must stay exactly as it was (``trainer.compose`` checks it bit for bit), and
    in train mode BatchNorm would still move its running statistics.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _modality_dropout(present: dict[str, torch.Tensor], p: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Drop each present modality with probability ``p``, always keeping at least one per sample."""
    if p <= 0 or len(present) < 2:
        return present
    mods = list(present)
    stacked = torch.stack([present[m] for m in mods])  # [M, B]
    keep = stacked & (torch.rand(stacked.shape, generator=gen) >= p)
    empty = ~keep.any(0)
    if bool(empty.any()):
        scores = torch.rand(stacked.shape, generator=gen) * stacked  # choose one present modality
        choice = scores.argmax(0)
        rescue = F.one_hot(choice, len(mods)).t().bool() & empty.unsqueeze(0)
        keep = keep | rescue
    return {m: keep[i] for i, m in enumerate(mods)}


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


def _augment(inputs: dict[str, torch.Tensor], stage: StageConfig, gen: torch.Generator,
             imu_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    out = dict(inputs)
    if "imu" in out and stage.imu_rotation > 0:
        if imu_stats is None:
            raise ValueError(f"stage {stage.name!r}: imu_rotation needs the IMU normalisation statistics")
        out["imu"] = rotate_imu(out["imu"], random_rotations(len(out["imu"]), stage.imu_rotation, gen), *imu_stats)
    if "imu" in out and stage.imu_noise > 0:
        x = out["imu"]
        scale = 1.0 + 0.1 * (torch.rand(x.shape[0], 1, 1, generator=gen) - 0.5)
        out["imu"] = x * scale + stage.imu_noise * torch.randn(x.shape, generator=gen)
    if "video" in out and stage.video_shift > 0:
        x = out["video"]
        dy, dx = (torch.randint(-stage.video_shift, stage.video_shift + 1, (2,), generator=gen)).tolist()
        out["video"] = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if "audio" in out:
        out["audio"] = augment_audio(out["audio"], stage, gen)
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


def augment_audio(x: torch.Tensor, stage: StageConfig, gen: torch.Generator) -> torch.Tensor:
    """Training augmentation of normalised fbank batches ``[B, frames, mels]``.

    In order: time shift, tempo stretch, mel-axis warp, gain, noise, then SpecAugment frequency
    and time masks.
    Only what the stage turns on draws random numbers, so old recipes get the same draws as before.
    """
    b, n_t, n_f = x.shape
    if stage.audio_shift > 0:
        shifts = torch.randint(-stage.audio_shift, stage.audio_shift + 1, (b,), generator=gen)
        x = _read_frames(x, torch.arange(n_t).unsqueeze(0) - shifts.unsqueeze(1))
    if stage.audio_time_stretch > 0:
        # output frame t reads input frame (T-1) - (T-1-t)·rate: anchored at the window's end (the
        # newest sound), rate > 1 plays faster (a quicker speaker)
        span = math.log1p(stage.audio_time_stretch)
        rate = torch.exp(span * (2 * torch.rand(b, generator=gen) - 1))
        x = _read_frames(x, (n_t - 1) - (n_t - 1 - torch.arange(n_t).unsqueeze(0)) * rate.unsqueeze(1))
    if stage.audio_freq_warp > 0:
        factor = 1.0 + stage.audio_freq_warp * (2 * torch.rand(b, generator=gen) - 1)
        # output bin k reads input bin k / factor (factor > 1: formants move up), edge bin beyond
        pos = (torch.arange(n_f).unsqueeze(0) / factor.unsqueeze(1)).clamp(0, n_f - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=n_f - 1)
        w = (pos - lo).unsqueeze(1)
        x = torch.gather(x, 2, lo.unsqueeze(1).expand(-1, n_t, -1)) * (1 - w) \
            + torch.gather(x, 2, hi.unsqueeze(1).expand(-1, n_t, -1)) * w
    if stage.audio_gain > 0:
        x = x + stage.audio_gain * (2 * torch.rand(b, 1, 1, generator=gen) - 1)
    noise = 0.5 * stage.imu_noise if stage.audio_noise is None else stage.audio_noise
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=gen)
    keep = torch.ones(b, n_t, n_f, dtype=torch.bool)
    for count, width, size, dim in ((stage.freq_masks, stage.freq_mask_width, n_f, 2),
                                    (stage.time_masks, stage.time_mask_width, n_t, 1)):
        if count <= 0 or width <= 0:
            continue
        idx = torch.arange(size)
        for _ in range(count):
            w = torch.randint(0, width + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - w + 1)).long()
            band = (idx.unsqueeze(0) >= start.unsqueeze(1)) & (idx.unsqueeze(0) < (start + w).unsqueeze(1))
            keep &= ~(band.unsqueeze(1) if dim == 2 else band.unsqueeze(2))
    if stage.freq_masks > 0 or stage.time_masks > 0:
        x = x * keep
    return x


def supervised_loss(model: MMGModel, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                    labels: torch.Tensor, stage: StageConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one supervised/align batch (shared by single-process and DDP training)."""
    enc = model.encode_batch(inputs, present)
    parts: dict[str, torch.Tensor] = {}
    if stage.type == "supervised" and stage.ce_weight > 0:
        label_mods = [m for m in (stage.label_modalities or stage.modalities) if m in enc.present]
        if label_mods:
            has_label_mod = torch.stack([enc.present[m] for m in label_mods]).any(0)
            logits = model.classifier(model.fuse(enc.detach() if stage.fusion_detach else enc, label_mods))
            if bool(has_label_mod.any()):
                parts["ce"] = stage.ce_weight * cross_entropy(
                    logits[has_label_mod], labels[has_label_mod], label_smoothing=stage.label_smoothing)
            if stage.unimodal_weight > 0:
                uni = [cross_entropy(model.unimodal_heads[m](enc.embeddings[m])[enc.present[m]],
                                     labels[enc.present[m]], label_smoothing=stage.label_smoothing)
                       for m in label_mods if bool(enc.present[m].any())]
                if uni:
                    parts["unimodal"] = stage.unimodal_weight * torch.stack(uni).mean()
            teacher = stage.distill_from
            if stage.distill_weight > 0 and teacher in enc.present and teacher not in label_mods:
                rows = enc.present[teacher] & has_label_mod
                if bool(rows.any()):
                    with torch.no_grad():
                        soft = model.unimodal_heads[teacher](enc.embeddings[teacher])
                    students = [(logits, rows)]
                    if stage.fusion_detach:  # the soft targets must reach the encoders through their own heads
                        students += [(model.unimodal_heads[m](enc.embeddings[m]), rows & enc.present[m])
                                     for m in label_mods]
                    parts["distill"] = stage.distill_weight * torch.stack([
                        distillation_loss(student[keep], soft[keep], stage.distill_temperature)
                        for student, keep in students if bool(keep.any())]).mean()
    if stage.type == "align" or stage.align_weight > 0:
        weight = 1.0 if stage.type == "align" else stage.align_weight
        parts["align"] = weight * alignment_loss(enc.embeddings, enc.present, temperature=stage.temperature)
    if not parts:
        raise ValueError(f"stage {stage.name!r}: no loss term is active")
    total = torch.stack(list(parts.values())).sum()
    return total, {k: float(v.detach()) for k, v in parts.items()}


def meta_loss(model: MMGModel, data: WindowSet, support_idx: torch.Tensor, query_idx: torch.Tensor,
              pair: Sequence[Sequence[str]], stage: StageConfig, gen: torch.Generator,
              imu_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-modal prototypical loss of one episode, plus ``ce_weight`` × the fused classifier's CE
    on the episode's clips (their labels are the training classes, the classifier's).

    ``imu_stats`` is the model's IMU normalisation (:func:`imu_statistics`), needed only when the
    stage rotates IMU windows; read from the model when not given.
    """
    support_mods, query_mods = list(pair[0]), list(pair[1])
    mods = sorted(set(support_mods) | set(query_mods))
    index = torch.cat([support_idx, query_idx])
    window = torch.randint(0, data.n_windows, (len(index),), generator=gen)
    inputs, present = data.batch(index, window, mods)
    inputs = _augment(inputs, stage, gen, imu_stats if imu_stats is not None else imu_statistics(model))
    device = next(model.parameters()).device
    inputs = {m: x.to(device) for m, x in inputs.items()}
    present = {m: p.to(device) for m, p in present.items()}
    enc = model.encode_batch(inputs, present)
    n_s = len(support_idx)
    support = embed(model, enc, support_mods)[:n_s]
    query = embed(model, enc, query_mods)[n_s:]
    labels = data.labels[index].to(device)
    loss, acc = prototypical_loss(support, labels[:n_s], query, labels[n_s:], "sqeuclidean", stage.proto_scale)
    parts = {"proto": loss}
    if stage.ce_weight > 0:
        logits = model.classifier(model.fuse(enc, mods))
        parts["ce"] = stage.ce_weight * cross_entropy(logits, labels, label_smoothing=stage.label_smoothing)
    total = torch.stack(list(parts.values())).sum()
    stats = {k: float(v.detach()) for k, v in parts.items()}
    stats["episode_acc"] = float(acc)
    return total, stats


@dataclass
class EpochPlan:
    """The batches of one epoch, fixed by the seed (so a resumed run repeats them exactly)."""

    batches: list[Any]


def plan_epoch(stage: StageConfig, data: WindowSet, seed: int, rank: int = 0, world: int = 1) -> EpochPlan:
    """Shuffled batches (supervised/align) or episodes (meta) for one epoch, sharded by rank."""
    gen = torch.Generator().manual_seed(seed)
    if stage.type == "meta":
        labels = data.labels.tolist()
        sampler = EpisodeSampler(labels, way=stage.way, shot=stage.shot, query=stage.query,
                                 episodes=stage.episodes, seed=seed,
                                 groups=data.groups if stage.cross_group_episodes else None)
        rng = random.Random(seed)
        batches = [(torch.as_tensor(s), torch.as_tensor(q), rng.choice(stage.pairs)) for s, q, _ in sampler]
        return EpochPlan(batches[rank::world])
    usable = torch.nonzero(data.labels >= 0).flatten() if stage.type == "supervised" else torch.arange(len(data))
    order = usable[torch.randperm(len(usable), generator=gen)]
    size = stage.batch_size * world
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    batches = [b for b in batches if len(b) >= 2 * world]  # alignment needs ≥ 2 per shard
    return EpochPlan([shard(b, rank, world) for b in batches])


def shard(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous share of a global batch (equal sizes; the remainder is dropped)."""
    per = len(batch) // world
    return batch[rank * per:(rank + 1) * per]


def lr_at(stage: StageConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Linear warm-up then cosine decay to 1 % of the peak."""
    warm = max(1, int(stage.warmup_epochs * steps_per_epoch))
    if step < warm:
        return stage.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return stage.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(model: MMGModel, stage: StageConfig) -> torch.optim.Optimizer:
    params = _apply_freeze(model, stage.freeze)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([
        {"params": decay, "weight_decay": stage.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ], lr=stage.lr)


def run_epoch(model: MMGModel, stage: StageConfig, data: WindowSet, plan: EpochPlan,
              optimizer: torch.optim.Optimizer, step: int, total_steps: int, steps_per_epoch: int,
              seed: int, device: torch.device, amp: bool = False,
              progress: Callable[[dict[str, float]], None] | None = None,
              grad_hook: Callable[[], None] | None = None) -> tuple[int, dict[str, float]]:
    """Train one epoch; returns the new global step and the epoch's mean loss terms."""
    model.train()
    freeze_batch_statistics(model)
    torch.manual_seed(seed)  # dropout draws from the global RNG: make a resumed epoch identical
    gen = torch.Generator().manual_seed(seed + 7919)
    imu_stats = imu_statistics(model)
    sums: dict[str, float] = {}
    for batch in plan.batches:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(stage, step, total_steps, steps_per_epoch)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            if stage.type == "meta":
                support_idx, query_idx, pair = batch
                loss, stats = meta_loss(model, data, support_idx, query_idx, pair, stage, gen, imu_stats)
            else:
                window = torch.randint(0, data.n_windows, (len(batch),), generator=gen)
                inputs, present = data.batch(batch, window, stage.modalities)
                present = _modality_dropout(present, stage.modality_dropout, gen)
                inputs = _augment(inputs, stage, gen, imu_stats)
                inputs = {m: x.to(device) for m, x in inputs.items()}
                present = {m: p.to(device) for m, p in present.items()}
                loss, stats = supervised_loss(model, inputs, present, data.labels[batch].to(device), stage)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_hook is not None:
            grad_hook()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 5.0)
        optimizer.step()
        step += 1
        stats["loss"] = float(loss.detach())
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v
        if progress is not None:
            progress(stats)
    n = max(1, len(plan.batches))
    return step, {k: v / n for k, v in sums.items()}


def allreduce_gradients(model: MMGModel, world: int) -> None:
    """Average gradients over ranks (synchronous data parallel, one flat all-reduce).

    Each rank may have used a different subset of parameters (modality dropout, episodes),
    so every trainable parameter takes part, with zeros where this rank had no gradient.
    """
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n
