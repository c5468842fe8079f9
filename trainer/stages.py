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

A ``centre`` stage trains nothing (:mod:`trainer.geometry`). A stage's options are a
:class:`~trainer.stage_config.StageConfig`; input augmentation is in :mod:`trainer.augment`.

With several ranks (:mod:`trainer.distributed`) a supervised/align step draws its random windows,
modality dropout and augmentation for the global batch on every rank, then keeps its own share,
so a run does not depend on how many ranks share it; meta-training gives each rank its own
episodes.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from mmg_live.models.mmg import MMGModel
from mmg_live.prototypes import embed
from trainer.augment import augment_inputs, imu_statistics, pose_spec_of
from trainer.data.episodes import EpisodeSampler
from trainer.distributed import gather_rows
from trainer.losses import alignment_loss, cross_entropy, distillation_loss, prototypical_loss
from trainer.stage_config import StageConfig
from trainer.windows import WindowSet

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
            teacher = stage.distill.teacher
            if stage.distill.weight > 0 and teacher in enc.present and teacher not in label_mods:
                rows = enc.present[teacher] & has_label_mod
                if bool(rows.any()):
                    with torch.no_grad():
                        soft = model.unimodal_heads[teacher](enc.embeddings[teacher])
                    students = [(logits, rows)]
                    if stage.fusion_detach:  # the soft targets must reach the encoders through their own heads
                        students += [(model.unimodal_heads[m](enc.embeddings[m]), rows & enc.present[m])
                                     for m in label_mods]
                    parts["distill"] = stage.distill.weight * torch.stack([
                        distillation_loss(student[keep], soft[keep], stage.distill.temperature)
                        for student, keep in students if bool(keep.any())]).mean()
    if stage.type == "align" or stage.align_weight > 0:
        weight = 1.0 if stage.type == "align" else stage.align_weight
        # the global batch's negatives: every rank's embeddings, with their gradients
        parts["align"] = weight * alignment_loss({m: gather_rows(e) for m, e in enc.embeddings.items()},
                                                 {m: gather_rows(p) for m, p in enc.present.items()},
                                                 temperature=stage.temperature)
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
    inputs = augment_inputs(inputs, stage.augment, gen, imu_stats if imu_stats is not None else imu_statistics(model),
                            pose_spec_of(model))
    device = next(model.parameters()).device
    inputs = {m: x.to(device) for m, x in inputs.items()}
    present = {m: p.to(device) for m, p in present.items()}
    enc = model.encode_batch(inputs, present)
    n_s = len(support_idx)
    support = embed(model, enc, support_mods)[:n_s]
    query = embed(model, enc, query_mods)[n_s:]
    labels = data.labels[index].to(device)
    loss, acc = prototypical_loss(support, labels[:n_s], query, labels[n_s:], "sqeuclidean", stage.meta.proto_scale)
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
    """Shuffled global batches of ``batch_size`` × ``world`` clips (supervised/align; each step keeps
    its rank's share, :func:`shard`) or this rank's episodes (meta) for one epoch."""
    gen = torch.Generator().manual_seed(seed)
    if stage.type == "meta":
        labels = episode_labels(data, stage)
        counts = Counter(y for y in labels if y >= 0)
        classes = sorted(c for c, n in counts.items() if n >= stage.meta.shot + stage.meta.query)
        sampler = EpisodeSampler(labels, way=stage.meta.way, shot=stage.meta.shot, query=stage.meta.query,
                                 episodes=stage.meta.episodes, seed=seed, classes=classes,
                                 groups=data.groups if stage.meta.cross_group_episodes else None)
        rng = random.Random(seed)
        batches = [(torch.as_tensor(s), torch.as_tensor(q), rng.choice(stage.meta.pairs)) for s, q, _ in sampler]
        return EpochPlan(batches[rank::world])
    usable = torch.nonzero(data.labels >= 0).flatten() if stage.type == "supervised" else torch.arange(len(data))
    order = usable[torch.randperm(len(usable), generator=gen)]
    size = stage.batch_size * world
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    batches = [b for b in batches if len(b) >= 2 * world]  # alignment needs ≥ 2 per shard
    return EpochPlan(batches)


def episode_labels(data: WindowSet, stage: StageConfig) -> list[int]:
    """Labels for episode sampling: -1 (never drawn) for clips that lack a modality some pair of
    the stage embeds (a trial whose pose could not be extracted), so every episode can embed its
    support and queries; classes left with fewer than shot + query clips are not drawn."""
    labels = data.labels.clone()
    needed = {m for pair in stage.meta.pairs for side in pair for m in side if m in data.present}
    for m in needed:
        labels[~data.present[m]] = -1
    return labels.tolist()


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


class TrainingStep(torch.nn.Module):
    """One batch's loss as a module's ``forward`` (what DistributedDataParallel syncs the gradients
    of): ``forward(batch)`` with a plan's item returns ``(loss, stats)``. :meth:`begin_epoch`
    gives it the stage, the data and the epoch's random generator."""

    def __init__(self, model: MMGModel, rank: int = 0, world: int = 1) -> None:
        super().__init__()
        self.model = model
        self.rank, self.world = rank, world
        self._epoch: tuple[StageConfig, WindowSet, torch.Generator, Any, torch.device] | None = None

    def begin_epoch(self, stage: StageConfig, data: WindowSet, gen: torch.Generator, device: torch.device) -> None:
        """What the next ``forward`` calls read."""
        self._epoch = (stage, data, gen, imu_statistics(self.model), device)

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        if self._epoch is None:
            raise RuntimeError("TrainingStep: call begin_epoch first")
        stage, data, gen, imu_stats, device = self._epoch
        if stage.type == "meta":
            support_idx, query_idx, pair = batch
            return meta_loss(self.model, data, support_idx, query_idx, pair, stage, gen, imu_stats)
        window = torch.randint(0, data.n_windows, (len(batch),), generator=gen)
        inputs, present = data.batch(batch, window, stage.modalities)
        present = _modality_dropout(present, stage.modality_dropout, gen)
        inputs = augment_inputs(inputs, stage.augment, gen, imu_stats, pose_spec_of(self.model))
        mine = shard(torch.arange(len(batch)), self.rank, self.world)
        inputs = {m: x[mine].to(device) for m, x in inputs.items()}
        present = {m: p[mine].to(device) for m, p in present.items()}
        return supervised_loss(self.model, inputs, present, data.labels[batch[mine]].to(device), stage)


def run_epoch(model: MMGModel, stage: StageConfig, data: WindowSet, plan: EpochPlan,
              optimizer: torch.optim.Optimizer, step: int, total_steps: int, steps_per_epoch: int,
              seed: int, device: torch.device, amp: bool = False,
              progress: Callable[[dict[str, float]], None] | None = None,
              step_module: torch.nn.Module | None = None) -> tuple[int, dict[str, float]]:
    """Train one epoch; returns the new global step and the epoch's mean loss terms.

    ``step_module`` runs each batch: a :class:`TrainingStep` of ``model``, possibly in
    DistributedDataParallel (:func:`trainer.distributed.data_parallel`); default a one-rank one.
    """
    model.train()
    freeze_batch_statistics(model)
    torch.manual_seed(seed)  # dropout draws from the global RNG: make a resumed epoch identical
    runner = step_module if step_module is not None else TrainingStep(model)
    training_step = runner.module if isinstance(runner, torch.nn.parallel.DistributedDataParallel) else runner
    training_step.begin_epoch(stage, data, torch.Generator().manual_seed(seed + 7919), device)
    sums: dict[str, float] = {}
    for batch in plan.batches:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(stage, step, total_steps, steps_per_epoch)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss, stats = runner(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
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
