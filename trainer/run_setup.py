"""What a training run is set up from: its recipe's clips, class set, model config and window sets."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mmg_live.modalities import AudioSpec, ModalitySpecs, preprocess_audio
from mmg_live.models.registry import MMGConfig, get_config
from trainer.data.cache import Cache
from trainer.data.clip import Clip
from trainer.datasets import class_subset, get_dataset, load_clips
from trainer.recipe import Recipe
from trainer.windows import WindowSet, build_window_set, make_views

log = logging.getLogger("mmg-train")


@dataclass
class RunData:
    """A run's classes, model config and preprocessed windows (test windows only when it evaluates)."""

    class_names: list[str]
    config: MMGConfig
    train_set: WindowSet
    test_set: WindowSet | None


def prepare_run_data(recipe: Recipe, dataset: str, root: Path) -> RunData:
    """Load the recipe's training (and test) clips, fix its model config, build the window sets."""
    entry = get_dataset(dataset)
    modalities = list(recipe.modalities)
    cache = Cache(recipe.cache_dir) if recipe.cache else None
    groups_train = recipe.train_groups or entry.default_groups("train")
    groups_test = recipe.test_groups or entry.default_groups("test")
    loaded = load_clips(dataset, root, groups_train, modalities, cache)
    keep = class_subset(recipe.classes, dataset, len(loaded.class_names), recipe.novel_actions, recipe.num_novel)
    class_names = [loaded.class_names[i] for i in keep]
    train_clips = remap_labels(loaded.clips, keep)
    if recipe.idle_class:
        from trainer.idle import NO_ACTION, still_clips

        max_window = max(get_config(recipe.config).specs[m].window_s for m in modalities)
        train_clips += still_clips(train_clips, len(class_names), max_window + 1.5)
        class_names.append(NO_ACTION)
    log.info("%d training clips (%d skipped), %d classes", len(train_clips), len(loaded.skipped), len(class_names))

    config = model_config(recipe, train_clips)
    if "video" in modalities and entry.video_kind:
        config.specs = replace(config.specs, video=replace(config.specs.video, trained_on=entry.video_kind))
    views = make_views(recipe.window_offsets, recipe.time_warp, recipe.max_views, recipe.seed)
    train_set = build_window_set(train_clips, config.specs, modalities, views, cache, loaded.skipped)
    test_set = None
    if groups_test and recipe.eval_each_epoch:
        test_clips = remap_labels(load_clips(dataset, root, groups_test, modalities, cache).clips, keep)
        if test_clips:
            test_set = build_window_set(test_clips, config.specs, modalities, [0.0], cache)
    return RunData(class_names, config, train_set, test_set)


def model_config(recipe: Recipe, train_clips: list[Clip]) -> MMGConfig:
    """The recipe's named config with its fusion, spec fields and encoder set, normalised on ``train_clips``."""
    config = get_config(recipe.config)
    if recipe.fusion:
        config.fusion = dict(recipe.fusion)
    if recipe.specs:  # e.g. {"imu": {"window_s": 4.5}}: spec fields overridden per modality
        specs = config.specs.to_dict()
        for m, values in recipe.specs.items():
            specs[m] = {**specs[m], **values}
        config.specs = type(config.specs).from_dict(specs)
    if recipe.encoders is not None:
        config.encoders = {m: v for m, v in config.encoders.items() if m in recipe.encoders}
    if recipe.fit_stats:
        config.specs = fit_stats(train_clips, config.specs, recipe.modalities)
    return config


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
            raw = AudioSpec(**{**specs.audio.__dict__, "mean": 0.0, "std": 0.5})  # std 0.5 → unscaled
            feats = []
            for s in streams[:: max(1, len(streams) // 200)]:
                window = (float(s.timestamps[-1]) - raw.window_s, float(s.timestamps[-1]))
                f = preprocess_audio(s.data, s.timestamps, raw, window, sample_rate=s.rate).numpy()
                if raw.frontend == "speech_embedding":
                    # one scalar mean/std over every dimension of the embeddings (no padding floor
                    # to leave out): the projection's LayerNorm is blind to it, but audio_noise is
                    # then in units of the embedding's spread
                    feats.append(f.reshape(-1))
                    continue
                feats.append(f[f > f.min() + 1e-6] if (f > f.min() + 1e-6).any() else f.reshape(-1))
            allf = np.concatenate(feats)
            specs = specs.with_stats("audio", float(allf.mean()), float(max(allf.std(), 1e-3)))
    return specs


def remap_labels(clips: list[Clip], keep: list[int]) -> list[Clip]:
    """Keep clips whose label is in ``keep`` and renumber labels to positions in ``keep``."""
    index = {c: i for i, c in enumerate(keep)}
    out = []
    for clip in clips:
        if clip.label in index:
            clip = copy.copy(clip)
            clip.label = index[clip.label]
            out.append(clip)
    return out
