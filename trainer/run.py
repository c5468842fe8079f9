"""One training run: recipe → data → model → stages, with per-epoch checkpoints and resume.

Output folder layout::

    OUT/model.safetensors        final model (mmg-live checkpoint)
    OUT/stage-<name>.safetensors model at the end of each stage
    OUT/last.safetensors         model after the newest finished epoch
    OUT/optimizer.safetensors    optimizer tensors of that epoch (no pickle)
    OUT/state.json               recipe, progress (stage, epoch, step), metrics history
    OUT/tb/                      TensorBoard logs
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmg_live.checkpoint import load_checkpoint, save_checkpoint
from mmg_live.modalities import ModalitySpecs
from mmg_live.models.mmg import MMGModel
from mmg_live.models.registry import get_config
from trainer.data.cache import Cache
from trainer.data.clip import Clip
from trainer.datasets import default_groups, load_clips
from trainer.stages import (StageConfig, allreduce_gradients, estimate_modality_geometry, make_optimizer, plan_epoch,
                            run_epoch)
from trainer.windows import WindowSet, build_window_set, make_views

log = logging.getLogger("mmg-train")
RECIPE_DIR = Path(__file__).parent / "recipes"


# ------------------------------------------------------------------------------------- recipes

def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe by name (``trainer/recipes/NAME.json``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        available = sorted(p.stem for p in RECIPE_DIR.glob("*.json"))
        raise FileNotFoundError(f"recipe {name_or_path!r} not found (available: {', '.join(available)})")
    try:
        recipe = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    recipe.setdefault("name", path.stem)
    return recipe


def apply_override(recipe: dict[str, Any], assignment: str) -> None:
    """``key.sub=value`` (value parsed as JSON when it can be); ``stages.*.epochs=3`` sets every stage."""
    if "=" not in assignment:
        raise ValueError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts = key.split(".")
    targets: list[Any] = [recipe]
    for part in parts[:-1]:
        nxt = []
        for t in targets:
            if part == "*" and isinstance(t, list):
                nxt.extend(t)
            elif isinstance(t, list):
                nxt.append(t[int(part)])
            else:
                nxt.append(t.setdefault(part, {}))
        targets = nxt
    for t in targets:
        if isinstance(t, list):
            t[int(parts[-1])] = value
        else:
            t[parts[-1]] = value


# ------------------------------------------------------------------------------------- helpers

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def fit_stats(clips: list[Clip], specs: ModalitySpecs, modalities: list[str]) -> ModalitySpecs:
    """Normalisation statistics from the training clips' raw samples (then fixed in the checkpoint)."""
    for m in modalities:
        streams = [c.streams[m] for c in clips if m in c.streams]
        if not streams:
            continue
        if m == "imu":
            data = np.concatenate([s.data for s in streams]).astype(np.float64)
            std = np.maximum(data.std(0), 1e-3)
            specs = specs.with_stats("imu", data.mean(0), std)
        elif m == "video":
            sample = np.concatenate([s.data[::4].reshape(-1)[::97] for s in streams]).astype(np.float64) / 255.0
            c = specs.video.channels
            specs = specs.with_stats("video", [sample.mean()] * c, [max(sample.std(), 1e-3)] * c)
        elif m == "audio":
            from mmg_live.modalities import AudioSpec, preprocess_audio

            raw = AudioSpec(**{**specs.audio.__dict__, "mean": 0.0, "std": 0.5})  # std 0.5 → unscaled
            feats = []
            for s in streams[:: max(1, len(streams) // 200)]:
                window = (float(s.timestamps[-1]) - raw.window_s, float(s.timestamps[-1]))
                f = preprocess_audio(s.data, s.timestamps, raw, window, sample_rate=s.rate).numpy()
                feats.append(f[f > f.min() + 1e-6] if (f > f.min() + 1e-6).any() else f.reshape(-1))
            allf = np.concatenate(feats)
            specs = specs.with_stats("audio", float(allf.mean()), float(max(allf.std(), 1e-3)))
    return specs


def _remap(clips: list[Clip], keep: list[int]) -> list[Clip]:
    """Keep clips whose label is in ``keep`` and renumber labels to positions in ``keep``."""
    index = {c: i for i, c in enumerate(keep)}
    out = []
    for clip in clips:
        if clip.label in index:
            clip = copy.copy(clip)
            clip.label = index[clip.label]
            out.append(clip)
    return out


def class_subset(recipe: dict[str, Any], dataset: str, num_classes: int) -> list[int]:
    """The class indices a recipe trains on: ``all``, ``base`` or ``novel`` (few-shot split)."""
    which = recipe.get("classes", "all")
    if which == "all":
        return list(range(num_classes))
    if dataset == "utd-mhad":
        from trainer.data.splits import utd_class_split

        split = utd_class_split(recipe.get("novel_actions", None) or (4, 8, 13, 17, 23, 27))
    else:
        from trainer.data.splits import random_class_split

        split = random_class_split(num_classes, recipe.get("num_novel", max(1, num_classes // 4)), seed=0)
    if which == "base":
        return list(split.base)
    if which == "novel":
        return list(split.novel)
    raise ValueError(f"recipe classes must be all, base or novel; got {which!r}")


# ----------------------------------------------------------------------------------- optimizer io

def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state as safetensors (tensors) + JSON metadata (scalars); never pickle."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in state["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars[f"{pid}.{k}"] = v
    meta = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    tmp = path.with_suffix(".tmp")
    save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys() if k != "_empty"}
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(json.loads(meta["scalars"]).items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})


# -------------------------------------------------------------------------------------- the run

@dataclass
class RunContext:
    recipe: dict[str, Any]
    dataset: str
    data: Path
    out: Path
    device: torch.device
    rank: int = 0
    world: int = 1
    max_epochs: int | None = None  # stop after this many epochs in this invocation (resume later)
    eval_every: int = 1  # test top-1 every N epochs of a supervised stage; 0: only after its last epoch


def _evaluate_now(eval_every: int, epoch: int, epochs: int) -> bool:
    """Whether the 0-based ``epoch`` of a stage of ``epochs`` logs its test top-1 (the last one always does)."""
    return epoch + 1 == epochs or (eval_every > 0 and (epoch + 1) % eval_every == 0)


def _requested_prefixes(name: str, parts: list[str] | None) -> list[str]:
    """The key prefixes of encoder ``name`` that an ``init`` entry asks for (none: not asked)."""
    whole = f"encoders.{name}."
    if not parts or any(p in ("encoders", whole[:-1]) for p in parts):
        return [whole]
    return [p.rstrip(".") + "." for p in parts if p.startswith(whole)]


def _encoder_mismatch(src_state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                      parts: list[str] | None) -> str | None:
    """Why a requested encoder of the donor cannot be copied whole into this model, or None.

    An encoder built by another config (other shapes, or extra or missing layers) is refused even
    when some of its tensors would fit: copying only those would leave it half initialised.
    """
    for name in sorted({k.split(".")[1] for k in src_state if k.startswith("encoders.")}):
        prefixes = _requested_prefixes(name, parts)
        if not prefixes:
            continue
        theirs = {k: tuple(v.shape) for k, v in src_state.items() if k.startswith(tuple(prefixes))}
        ours = {k: tuple(v.shape) for k, v in own.items() if k.startswith(tuple(prefixes))}
        if not ours:
            if parts:
                return f"this recipe's config has no {name} encoder (asked for {prefixes[0][:-1]})"
            continue
        extra, missing = sorted(theirs.keys() - ours.keys()), sorted(ours.keys() - theirs.keys())
        other = sorted(k for k in theirs.keys() & ours.keys() if theirs[k] != ours[k])
        if extra or missing:
            detail = f"{len(extra)} tensors more, {len(missing)} fewer; " + \
                (f"it has {extra[0]}" if extra else f"it lacks {missing[0]}")
        elif other:
            detail = f"{len(other)} tensors differ in shape, e.g. {other[0]}"
        else:
            continue
        return f"its {name} encoder has another architecture than this recipe's config ({detail})"
    return None


def _init_parts(model: MMGModel, recipe: dict[str, Any], device: torch.device) -> None:
    """Copy weights (whole model or named parts) from earlier runs' checkpoints.

    Encoders are copied whole or not at all (an error names the checkpoint); a head of another
    shape (another class set) is skipped on purpose.
    """
    for entry in recipe.get("init", []):
        path = Path(entry["checkpoint"])
        source, info = load_checkpoint(path, device="cpu")
        parts = entry.get("parts")
        src_state = source.state_dict()
        own = model.state_dict()
        mismatch = _encoder_mismatch(src_state, own, parts)
        if mismatch:
            raise ValueError(f"{path}: {mismatch}; train that checkpoint again with the current config")
        copied, other_shape = 0, []
        for key, value in src_state.items():
            if parts and not any(key.startswith(p) for p in parts):
                continue
            if key in own and own[key].shape == value.shape:
                own[key].copy_(value)
                copied += 1
            elif key in own:
                other_shape.append(key)
        if other_shape:
            log.info("not copied from %s (other shape): %s", path, ", ".join(other_shape))
        if copied == 0:
            raise ValueError(f"{path}: no weights matched parts {parts}")
        for m in info.trained.encoders:
            if _requested_prefixes(m, parts) and m not in model.trained.encoders:
                model.trained.encoders.append(m)
        log.info("initialised %d tensors from %s", copied, path)


def evaluate_top1(model: MMGModel, data: WindowSet, modalities: list[str], batch_size: int = 64) -> float:
    """Top-1 of the fused classifier over clips that have a label, on window 0 (the clip end)."""
    from trainer.evaluate import predict

    probs = predict(model, data, modalities, batch_size)
    labels = data.labels
    mask = labels >= 0
    return float((probs.argmax(1)[mask] == labels[mask]).float().mean())


def train(ctx: RunContext) -> Path:
    """Run every stage of the recipe (resuming from ``OUT/state.json`` when present)."""
    recipe, out = ctx.recipe, ctx.out
    out.mkdir(parents=True, exist_ok=True)
    seed = int(recipe.get("seed", 0))
    seed_everything(seed + ctx.rank)
    modalities = list(recipe.get("modalities", ["video", "imu"]))
    cache = Cache(recipe.get("cache_dir")) if recipe.get("cache", True) else None
    groups_train = recipe.get("train_groups") or default_groups(ctx.dataset, "train")
    groups_test = recipe.get("test_groups") or default_groups(ctx.dataset, "test")
    groups_train = None if groups_train is None else [str(g) for g in groups_train]
    loaded = load_clips(ctx.dataset, ctx.data, groups_train, modalities, cache)
    keep = class_subset(recipe, ctx.dataset, len(loaded.class_names))
    class_names = [loaded.class_names[i] for i in keep]
    train_clips = _remap(loaded.clips, keep)
    log.info("%d training clips (%d skipped), %d classes", len(train_clips), len(loaded.skipped), len(class_names))

    state_path = out / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state is not None and state.get("recipe") != recipe:
        raise ValueError(f"{out} holds a run of a different recipe; use another --out or delete {state_path}")

    config = get_config(recipe.get("config", "lite"))
    if recipe.get("fusion"):
        config.fusion = dict(recipe["fusion"])
    if recipe.get("specs"):  # e.g. {"imu": {"window_s": 4.5}}: spec fields overridden per modality
        specs = config.specs.to_dict()
        for m, fields in recipe["specs"].items():
            specs[m] = {**specs[m], **fields}
        config.specs = type(config.specs).from_dict(specs)
    config.encoders = {m: v for m, v in config.encoders.items() if m in recipe.get("encoders", config.encoders)}
    if recipe.get("fit_stats", True):
        config.specs = fit_stats(train_clips, config.specs, modalities)
    views = make_views(recipe.get("window_offsets", [0.0, 0.15, 0.3, 0.45]), recipe.get("time_warp", [1.0]),
                       recipe.get("max_views"), seed)
    train_set = build_window_set(train_clips, config.specs, modalities, views, cache, loaded.skipped)
    test_set = None
    if groups_test and recipe.get("eval_each_epoch", True):
        test_loaded = load_clips(ctx.dataset, ctx.data, [str(g) for g in groups_test], modalities, cache)
        test_clips = _remap(test_loaded.clips, keep)
        if test_clips:
            test_set = build_window_set(test_clips, config.specs, modalities, [0.0], cache)

    model = MMGModel(config, class_names).to(ctx.device)
    if state is None:
        _init_parts(model, recipe, ctx.device)
    else:
        resumed, _ = load_checkpoint(out / "last.safetensors", device=ctx.device)
        if resumed.config.to_dict() != config.to_dict():
            raise ValueError(f"{out / 'last.safetensors'}: this run was made with a different model config than "
                             f"the recipe's now ({config.name!r} changed since); resume needs the same config: "
                             f"train into a new --out folder")
        model.load_state_dict(resumed.state_dict())
        model.trained = resumed.trained
        log.info("resuming %s at stage %d epoch %d", out, state["stage"], state["epoch"])
    state = state or {"recipe": recipe, "stage": 0, "epoch": 0, "step": 0, "history": []}
    writer = _tensorboard(out) if ctx.rank == 0 else None
    amp = ctx.device.type == "cuda" and bool(recipe.get("amp", True))
    stages = [StageConfig.from_dict(s) for s in recipe["stages"]]

    epochs_run = 0
    for stage_index, stage in enumerate(stages):
        if stage_index < state["stage"]:
            continue
        if stage.type == "centre":
            _centre_stage(ctx, model, stage, stage_index, train_set, state)
            continue
        optimizer = make_optimizer(model, stage)
        start_epoch = state["epoch"] if stage_index == state["stage"] else 0
        if start_epoch > 0 and (out / "optimizer.safetensors").is_file():
            load_optimizer(out / "optimizer.safetensors", optimizer)
        steps_per_epoch = len(plan_epoch(stage, train_set, seed, ctx.rank, ctx.world).batches)
        total = steps_per_epoch * stage.epochs
        step = state["step"] if start_epoch > 0 else 0
        for epoch in range(start_epoch, stage.epochs):
            if ctx.max_epochs is not None and epochs_run >= ctx.max_epochs:
                log.info("stopping after %d epochs as asked; run the same command again to resume", epochs_run)
                return out / "last.safetensors"
            epochs_run += 1
            epoch_seed = seed * 100003 + stage_index * 1009 + epoch
            plan = plan_epoch(stage, train_set, epoch_seed, ctx.rank, ctx.world)
            started = time.time()
            hook = (lambda: allreduce_gradients(model, ctx.world)) if ctx.world > 1 else None
            step, stats = run_epoch(model, stage, train_set, plan, optimizer, step, total, steps_per_epoch,
                                    epoch_seed, ctx.device, amp, progress=_progress(stage, epoch, len(plan.batches)),
                                    grad_hook=hook)
            record = {"stage": stage.name, "epoch": epoch + 1, "seconds": round(time.time() - started, 1), **stats}
            if test_set is not None and stage.type == "supervised" and _evaluate_now(ctx.eval_every, epoch, stage.epochs):
                label_mods = [m for m in (stage.label_modalities or stage.modalities) if m in test_set.tensors]
                record["test_top1"] = evaluate_top1(model, test_set, label_mods)
            _mark_trained(model, stage)
            state["history"].append(record)
            log.info("%s", json.dumps(record))
            if writer is not None:
                for k, v in record.items():
                    if isinstance(v, float):
                        writer.add_scalar(f"{stage.name}/{k}", v, epoch + 1)
            if ctx.rank == 0:
                state.update(stage=stage_index, epoch=epoch + 1, step=step)
                save_checkpoint(out / "last.safetensors", model, training=_training_info(recipe, state))
                save_optimizer(out / "optimizer.safetensors", optimizer)
                _write_json(state_path, state)
        if ctx.rank == 0:
            save_checkpoint(out / f"stage-{stage.name}.safetensors", model,
                            training=_training_info(recipe, state, after_stage=stage.name))
            state.update(stage=stage_index + 1, epoch=0, step=0)
            _write_json(state_path, state)
    final = out / "model.safetensors"
    if ctx.rank == 0:
        save_checkpoint(final, model, training=_training_info(recipe, state))
    if writer is not None:
        writer.close()
    return final


def _centre_stage(ctx: RunContext, model: MMGModel, stage: StageConfig, stage_index: int,
                  train_set: WindowSet, state: dict[str, Any]) -> None:
    """Store the modality centres (and maps onto ``stage.rotate_to``) of ``stage.modalities`` (no
    training; every rank computes the same)."""
    if not model.centred:
        raise ValueError(f"stage {stage.name!r} (type centre) needs the recipe's fusion to be "
                         f'{{"kind": "mean", "centre": true}}, got {model.config.fusion}')
    started = time.time()
    centres, rotations = estimate_modality_geometry(model, train_set, stage.modalities, stage.rotate_to)
    model.set_modality_centres(centres, rotations)
    record = {"stage": stage.name, "seconds": round(time.time() - started, 1),
              **{f"centre_norm_{m}": round(float(c.norm()), 4) for m, c in centres.items()},
              # how far each map turns its modality: trace(R)/D, the expected cosine of x and x @ R (1: none)
              **{f"rotation_trace_{m}": round(float(r.trace()) / r.shape[0], 4) for m, r in rotations.items()}}
    state["history"].append(record)
    log.info("%s", json.dumps(record))
    if ctx.rank == 0:
        save_checkpoint(ctx.out / f"stage-{stage.name}.safetensors", model,
                        training=_training_info(ctx.recipe, state, after_stage=stage.name))
        state.update(stage=stage_index + 1, epoch=0, step=0)
        # a resume loads last.safetensors: it must hold the centres before state.json moves on
        save_checkpoint(ctx.out / "last.safetensors", model, training=_training_info(ctx.recipe, state))
        _write_json(ctx.out / "state.json", state)


def _mark_trained(model: MMGModel, stage: StageConfig) -> None:
    frozen = tuple(stage.freeze)
    for m in stage.modalities:
        if not any(f"encoders.{m}".startswith(p) or p == "encoders" for p in frozen) and m not in model.trained.encoders:
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


def _training_info(recipe: dict[str, Any], state: dict[str, Any], after_stage: str | None = None) -> dict[str, Any]:
    table = dict(recipe.get("table", {}))
    if after_stage is not None:  # a stage checkpoint is its own table row (e.g. "without meta-training")
        table["label"] = f"{table.get('label', recipe.get('name'))} [after stage {after_stage}]"
    return {"recipe": recipe.get("name"), "table": table, "history": state["history"][-50:]}


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is pinned in requirements; tolerate its absence elsewhere
        return None
    return SummaryWriter(str(out / "tb"))


def _progress(stage: StageConfig, epoch: int, total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", leave=False,
               disable=os.environ.get("MMG_NO_PROGRESS") == "1")

    def update(stats: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}")
        if bar.n >= total:
            bar.close()
    return update
