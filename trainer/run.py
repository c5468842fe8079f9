"""One training run: recipe → data → model → stages, with per-epoch checkpoints and resume.

Output folder layout::

    OUT/model.safetensors        final model (mmg-live checkpoint)
    OUT/stage-<name>.safetensors model at the end of each stage
    OUT/last.safetensors         model after the newest finished epoch
    OUT/optimizer.safetensors    optimizer tensors of that epoch (no pickle)
    OUT/state.json               recipe, progress (stage, epoch, step), metrics history
    OUT/tb/                      TensorBoard logs

:func:`train` is three steps: set up the data and model config (:mod:`trainer.run_setup`),
start the model or resume it (:func:`read_progress`, :func:`start_model`), then the stage
loop (:class:`StageLoop`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mmg_common import atomic_write_json
from mmg_live.checkpoint import load_checkpoint, save_checkpoint
from mmg_live.models.mmg import MMGModel
from trainer.evaluate import predict
from trainer.geometry import estimate_modality_geometry
from trainer.init_weights import init_from_checkpoints
from trainer.pretrained import init_from_pretrained
from trainer.optimizer_state import load_optimizer, save_optimizer
from trainer.recipe import Recipe
from trainer.run_setup import RunData, prepare_run_data
from trainer.stage_config import StageConfig
from trainer.distributed import data_parallel
from trainer.stages import TrainingStep, make_optimizer, plan_epoch, run_epoch
from trainer.windows import WindowSet

log = logging.getLogger("mmg-train")


@dataclass
class RunContext:
    """Where and how a recipe is trained."""

    recipe: Recipe
    dataset: str
    data: Path
    out: Path
    device: torch.device
    rank: int = 0
    world: int = 1
    max_epochs: int | None = None  # stop after this many epochs in this invocation (resume later)
    eval_every: int = 1  # test top-1 every N epochs of a supervised stage; 0: only after its last epoch


@dataclass
class RunProgress:
    """``OUT/state.json``: the resolved recipe a run was started with, where it is, and its history."""

    recipe: dict[str, Any]
    stage: int = 0  # index of the stage in progress
    epoch: int = 0  # epochs of that stage finished
    step: int = 0  # optimizer steps of that stage so far
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, out: Path) -> None:
        atomic_write_json(out / "state.json", asdict(self), indent=1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def train(ctx: RunContext) -> Path:
    """Run every stage of the recipe (resuming from ``OUT/state.json`` when present)."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    seed_everything(ctx.recipe.seed + ctx.rank)
    progress = read_progress(ctx.out, ctx.recipe)
    data = prepare_run_data(ctx.recipe, ctx.dataset, ctx.data)
    model = start_model(ctx, data, resume=progress is not None)
    if progress is None:
        progress = RunProgress(ctx.recipe.to_dict())
    else:
        log.info("resuming %s at stage %d epoch %d", ctx.out, progress.stage, progress.epoch)
    return StageLoop(ctx, data, model, progress).run()


# ------------------------------------------------------------------------------------ resume

def read_progress(out: Path, recipe: Recipe) -> RunProgress | None:
    """The progress of the run in ``out`` (None: a new run), refusing a run of another recipe.

    Run folders store the resolved recipe as JSON (older ones the recipe as written, both load).
    """
    state_path = out / "state.json"
    if not state_path.is_file():
        return None
    state = json.loads(state_path.read_text())
    try:
        stored = Recipe.from_dict(state.get("recipe") or {}, source=f"{state_path} (recipe)")
    except ValueError as exc:
        raise ValueError(f"{out} holds a run whose recipe no longer loads ({exc}); use another --out "
                         f"or delete {state_path}") from None
    if stored != recipe:
        raise ValueError(f"{out} holds a run of a different recipe; use another --out or delete {state_path}")
    return RunProgress(recipe=state["recipe"], stage=int(state.get("stage", 0)), epoch=int(state.get("epoch", 0)),
                       step=int(state.get("step", 0)), history=list(state.get("history", [])))


def start_model(ctx: RunContext, data: RunData, resume: bool) -> MMGModel:
    """The model of a new run (weights from the recipe's ``init``) or of a resumed one (``last.safetensors``)."""
    model = MMGModel(data.config, data.class_names).to(ctx.device)
    if not resume:
        init_from_pretrained(model, ctx.recipe.pretrained)
        init_from_checkpoints(model, ctx.recipe.init)
        return model
    last = ctx.out / "last.safetensors"
    resumed, _ = load_checkpoint(last, device=ctx.device)
    if resumed.config.to_dict() != data.config.to_dict():
        raise ValueError(f"{last}: this run was made with a different model config than the recipe's now "
                         f"({data.config.name!r} changed since); resume needs the same config: "
                         f"train into a new --out folder")
    model.load_state_dict(resumed.state_dict())
    model.trained = resumed.trained
    return model


# -------------------------------------------------------------------------------- stage loop

class StageLoop:
    """Runs a recipe's stages from where ``progress`` says, checkpointing after every epoch."""

    def __init__(self, ctx: RunContext, data: RunData, model: MMGModel, progress: RunProgress) -> None:
        self.ctx, self.data, self.model, self.progress = ctx, data, model, progress
        self.epochs_run = 0  # in this invocation, for ``ctx.max_epochs``
        self.writer = _tensorboard(ctx.out) if ctx.rank == 0 else None

    @property
    def _lead(self) -> bool:
        return self.ctx.rank == 0

    def run(self) -> Path:
        """Every stage not finished yet; the final checkpoint (``last`` when stopped by ``max_epochs``)."""
        try:
            for index, stage in enumerate(self.ctx.recipe.stages):
                if index < self.progress.stage:
                    continue
                if stage.type == "centre":
                    self.centre_stage(index, stage)
                elif not self.training_stage(index, stage):
                    log.info("stopping after %d epochs as asked; run the same command again to resume",
                             self.epochs_run)
                    return self.ctx.out / "last.safetensors"
            final = self.ctx.out / "model.safetensors"
            if self._lead:
                save_checkpoint(final, self.model, training=self._training_info())
            return final
        finally:
            if self.writer is not None:
                self.writer.close()

    def training_stage(self, index: int, stage: StageConfig) -> bool:
        """Train ``stage`` to its last epoch; False when ``max_epochs`` stopped it first."""
        ctx, train_set, seed = self.ctx, self.data.train_set, self.ctx.recipe.seed
        optimizer = make_optimizer(self.model, stage)
        # after make_optimizer's freezing: DDP syncs the parameters that require grad when made
        self._step_module: torch.nn.Module = data_parallel(TrainingStep(self.model, ctx.rank, ctx.world), ctx.device)
        start_epoch = self.progress.epoch if index == self.progress.stage else 0
        if start_epoch > 0 and (ctx.out / "optimizer.safetensors").is_file():
            load_optimizer(ctx.out / "optimizer.safetensors", optimizer)
        steps_per_epoch = len(plan_epoch(stage, train_set, seed, ctx.rank, ctx.world).batches)
        step = self.progress.step if start_epoch > 0 else 0
        for epoch in range(start_epoch, stage.epochs):
            if ctx.max_epochs is not None and self.epochs_run >= ctx.max_epochs:
                return False
            self.epochs_run += 1
            step = self.train_epoch(index, stage, epoch, optimizer, step, steps_per_epoch)
        self.finish_stage(index, stage)
        return True

    def train_epoch(self, index: int, stage: StageConfig, epoch: int, optimizer: torch.optim.Optimizer,
                    step: int, steps_per_epoch: int) -> int:
        """One epoch: train, record (test top-1 when due), checkpoint; returns the new step."""
        ctx, model = self.ctx, self.model
        epoch_seed = ctx.recipe.seed * 100003 + index * 1009 + epoch
        plan = plan_epoch(stage, self.data.train_set, epoch_seed, ctx.rank, ctx.world)
        started = time.time()
        step, stats = run_epoch(model, stage, self.data.train_set, plan, optimizer, step,
                                steps_per_epoch * stage.epochs, steps_per_epoch, epoch_seed, ctx.device,
                                self._amp, progress=_progress(stage, epoch, len(plan.batches)),
                                step_module=self._step_module)
        record = {"stage": stage.name, "epoch": epoch + 1, "seconds": round(time.time() - started, 1), **stats}
        test_set = self.data.test_set
        if test_set is not None and stage.type == "supervised" and _evaluate_now(ctx.eval_every, epoch, stage.epochs):
            label_mods = [m for m in (stage.label_modalities or stage.modalities) if m in test_set.tensors]
            record["test_top1"] = evaluate_top1(model, test_set, label_mods)
        mark_trained(model, stage)
        self.progress.history.append(record)
        log.info("%s", json.dumps(record))
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, float):
                    self.writer.add_scalar(f"{stage.name}/{k}", v, epoch + 1)
        if self._lead:
            self.progress.stage, self.progress.epoch, self.progress.step = index, epoch + 1, step
            save_checkpoint(ctx.out / "last.safetensors", model, training=self._training_info())
            save_optimizer(ctx.out / "optimizer.safetensors", optimizer)
            self.progress.save(ctx.out)
        return step

    def centre_stage(self, index: int, stage: StageConfig) -> None:
        """Store the modality centres (and maps onto ``rotate_to``) of ``stage.modalities`` (no
        training; every rank computes the same)."""
        model = self.model
        if not model.centred:
            raise ValueError(f"stage {stage.name!r} (type centre) needs the recipe's fusion to be "
                             f'{{"kind": "mean", "centre": true}}, got {model.config.fusion}')
        started = time.time()
        centres, rotations = estimate_modality_geometry(model, self.data.train_set, stage.modalities,
                                                        stage.centre.rotate_to)
        model.set_modality_centres(centres, rotations)
        record = {"stage": stage.name, "seconds": round(time.time() - started, 1),
                  **{f"centre_norm_{m}": round(float(c.norm()), 4) for m, c in centres.items()},
                  # how far each map turns its modality: trace(R)/D, the expected cosine of x and x @ R (1: none)
                  **{f"rotation_trace_{m}": round(float(r.trace()) / r.shape[0], 4) for m, r in rotations.items()}}
        self.progress.history.append(record)
        log.info("%s", json.dumps(record))
        if self._lead:
            save_checkpoint(self.ctx.out / f"stage-{stage.name}.safetensors", model,
                            training=self._training_info(after_stage=stage.name))
            self._next_stage(index)
            # a resume loads last.safetensors: it must hold the centres before state.json moves on
            save_checkpoint(self.ctx.out / "last.safetensors", model, training=self._training_info())
            self.progress.save(self.ctx.out)

    def finish_stage(self, index: int, stage: StageConfig) -> None:
        """Checkpoint the end of a training stage and move the progress to the next one."""
        if self._lead:
            save_checkpoint(self.ctx.out / f"stage-{stage.name}.safetensors", self.model,
                            training=self._training_info(after_stage=stage.name))
            self._next_stage(index)
            self.progress.save(self.ctx.out)

    def _next_stage(self, index: int) -> None:
        self.progress.stage, self.progress.epoch, self.progress.step = index + 1, 0, 0

    @property
    def _amp(self) -> bool:
        return self.ctx.device.type == "cuda" and self.ctx.recipe.amp

    def _training_info(self, after_stage: str | None = None) -> dict[str, Any]:
        """What the checkpoint records of the run: recipe name, table row, recent history."""
        recipe = self.ctx.recipe
        table = recipe.table.to_dict()
        if after_stage is not None:  # a stage checkpoint is its own table row (e.g. "without meta-training")
            table["label"] = f"{table.get('label', recipe.name)} [after stage {after_stage}]"
        return {"recipe": recipe.name, "table": table, "history": self.progress.history[-50:]}


def evaluate_top1(model: MMGModel, data: WindowSet, modalities: list[str], batch_size: int = 64) -> float:
    """Top-1 of the fused classifier over clips that have a label and every one of ``modalities``,
    on window 0 (the clip end)."""
    data = data.having(modalities)
    probs = predict(model, data, modalities, batch_size)
    labels = data.labels
    mask = labels >= 0
    return float((probs.argmax(1)[mask] == labels[mask]).float().mean())


def mark_trained(model: MMGModel, stage: StageConfig) -> None:
    """Record in ``model.trained`` which encoders, fusion entries and classifier inputs ``stage`` trained."""
    frozen = tuple(stage.freeze)
    for m in stage.modalities:
        trained = not any(f"encoders.{m}".startswith(p) or p == "encoders" for p in frozen)
        if trained and m not in model.trained.encoders:
            model.trained.encoders.append(m)
    if stage.type in ("supervised", "meta") and stage.ce_weight > 0:
        for m in stage.label_modalities or stage.modalities:
            if m not in model.trained.fusion:
                model.trained.fusion.append(m)
            if m not in model.trained.classifier_modalities:
                model.trained.classifier_modalities.append(m)
        model.trained.classifier = True
    if stage.type == "meta":
        for m in stage.modalities:
            if m not in model.trained.fusion:
                model.trained.fusion.append(m)


def _evaluate_now(eval_every: int, epoch: int, epochs: int) -> bool:
    """Whether the 0-based ``epoch`` of a stage of ``epochs`` logs its test top-1 (the last one always does)."""
    return epoch + 1 == epochs or (eval_every > 0 and (epoch + 1) % eval_every == 0)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is pinned in requirements; tolerate its absence elsewhere
        return None
    return SummaryWriter(str(out / "tb"))


def _progress(stage: StageConfig, epoch: int, total: int) -> Callable[[dict[str, float]], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", leave=False,
               disable=os.environ.get("MMG_NO_PROGRESS") == "1")

    def update(stats: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}")
        if bar.n >= total:
            bar.close()
    return update
