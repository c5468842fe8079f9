"""Clips → model tensors through the ONE preprocessing (:func:`mmg_live.modalities.preprocess`).

A clip is turned into the windows the live engine would see: each window ends at a time
``t_end`` and every modality reads its own ``window_s`` before it. Evaluation uses the window
ending at the clip's end (the live prediction "at the end of the action"); training draws
from a few windows ending slightly earlier, computed once and cached in memory and on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from mmg_live.modalities import ModalitySpecs, PreprocessError, modality_window, preprocess, spec_to_dict
from trainer.data.cache import Cache, config_hash
from trainer.data.clip import Clip, DataError

log = logging.getLogger(__name__)


def clip_end(clip: Clip) -> float:
    """The time of the clip's last sample over all its streams."""
    return max(float(s.timestamps[-1]) for s in clip.streams.values())


def window_ends(clip: Clip, offsets: Sequence[float]) -> list[float]:
    """Window end times ``clip_end - offset`` (offsets in seconds, 0 = at the end)."""
    end = clip_end(clip)
    return [end - float(o) for o in offsets]


def warp_clip(clip: Clip, speed: float) -> Clip:
    """The clip played ``speed`` times faster (timestamps divided by ``speed``), all streams alike.

    A training augmentation for how fast different people perform an action; the tensors
    still come from the one preprocessing, which only sees the (warped) timestamps.
    """
    if speed == 1.0:
        return clip
    from dataclasses import replace as dc_replace

    from trainer.data.clip import Stream

    streams = {m: Stream(s.data, s.timestamps / speed, s.rate * speed) for m, s in clip.streams.items()}
    return dc_replace(clip, streams=streams)


def make_views(offsets: Sequence[float], speeds: Sequence[float] = (1.0,), max_views: int | None = None,
               seed: int = 0) -> list[tuple[float, float]]:
    """(offset, speed) pairs: the grid, or a fixed-seed sample of it that always keeps (0, 1)."""
    grid = [(float(o), float(s)) for s in speeds for o in offsets]
    if max_views is None or len(grid) <= max_views:
        return grid
    rng = np.random.default_rng(seed)
    rest = [v for v in grid if v != (0.0, 1.0)]
    picked = [rest[i] for i in sorted(rng.choice(len(rest), size=max_views - 1, replace=False))]
    return [(0.0, 1.0)] + picked


def clip_tensors(clip: Clip, specs: ModalitySpecs, modalities: Iterable[str], t_end: float) -> dict[str, torch.Tensor]:
    """Every requested modality of ``clip`` the clip has, preprocessed for the window ending at ``t_end``."""
    out = {}
    for m in modalities:
        stream = clip.streams.get(m)
        if stream is None:
            continue
        options = {"sample_rate": stream.rate} if m == "audio" else {}
        out[m] = preprocess(m, stream.data, stream.timestamps, specs, modality_window(specs, m, t_end), **options)
    return out


@dataclass
class WindowSet:
    """Preprocessed windows of many clips: ``tensors[m]`` is ``[n_clips, n_windows, ...]``."""

    tensors: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    labels: torch.Tensor
    clip_ids: list[str]
    groups: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_windows(self) -> int:
        return next(iter(self.tensors.values())).shape[1]

    def having(self, modalities: Sequence[str]) -> "WindowSet":
        """The clips that have every one of ``modalities`` (evaluating a modality set on clips
        that lack one, e.g. a trial whose pose could not be extracted, would score a different set)."""
        keep = torch.ones(len(self.labels), dtype=torch.bool)
        for m in modalities:
            keep &= self.present[m] if m in self.present else torch.zeros_like(keep)
        index = keep.nonzero().flatten()
        return WindowSet(tensors={m: t[index] for m, t in self.tensors.items()},
                         present={m: p[index] for m, p in self.present.items()}, labels=self.labels[index],
                         clip_ids=[self.clip_ids[i] for i in index.tolist()],
                         groups=[self.groups[i] for i in index.tolist()])

    def batch(self, index: torch.Tensor, window: torch.Tensor | int = 0,
              modalities: Sequence[str] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Inputs and presence masks of clips ``index`` at window ``window`` (an int or per clip)."""
        mods = [m for m in self.tensors if modalities is None or m in modalities]
        if isinstance(window, int):
            window = torch.full((len(index),), window, dtype=torch.long)
        inputs = {m: self.tensors[m][index, window].float() for m in mods}
        present = {m: self.present[m][index] for m in mods}
        return inputs, present


def build_window_set(clips: Iterable[Clip], specs: ModalitySpecs, modalities: Sequence[str],
                     offsets: Sequence[float | tuple[float, float]] = (0.0,), cache: Cache | None = None,
                     skipped: list[tuple[str, str]] | None = None) -> WindowSet:
    """Preprocess every clip at every view; a clip that fails is skipped and recorded.

    A view is an offset of the window end before the clip end (seconds), or an
    ``(offset, speed)`` pair that also time-warps the clip (see :func:`warp_clip`).
    """
    offsets = [(float(o), 1.0) if not isinstance(o, (tuple, list)) else (float(o[0]), float(o[1]))
               for o in offsets]
    spec_key = config_hash({m: spec_to_dict(specs[m]) for m in modalities})
    per_mod: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    present: dict[str, list[bool]] = {m: [] for m in modalities}
    labels, ids, groups = [], [], []
    skipped = skipped if skipped is not None else []
    for clip in clips:
        try:
            arrays = _cached_windows(clip, specs, modalities, offsets, spec_key, cache)
        except (PreprocessError, DataError) as exc:
            skipped.append((clip.clip_id, str(exc)))
            log.warning("skipping clip %s: %s", clip.clip_id, exc)
            continue
        for m in modalities:
            shape = (len(offsets),) + specs[m].output_shape()
            if m in arrays:
                per_mod[m].append(torch.from_numpy(arrays[m]))
                present[m].append(True)
            else:
                per_mod[m].append(torch.zeros(shape, dtype=torch.float16))
                present[m].append(False)
        labels.append(-1 if clip.label is None else int(clip.label))
        ids.append(clip.clip_id)
        groups.append(clip.subject)
    if not labels:
        raise DataError(f"no usable clips ({len(skipped)} skipped; first: {skipped[:1]})")
    keep = [m for m in modalities if any(present[m])]
    return WindowSet(
        tensors={m: torch.stack(per_mod[m]) for m in keep},
        present={m: torch.tensor(present[m]) for m in keep},
        labels=torch.tensor(labels), clip_ids=ids, groups=groups,
    )


def _cached_windows(clip: Clip, specs: ModalitySpecs, modalities: Sequence[str],
                    offsets: Sequence[tuple[float, float]],
                    spec_key: str, cache: Cache | None) -> dict[str, np.ndarray]:
    def compute() -> dict[str, np.ndarray]:
        # A modality that fails in any view (pose of a trial where the person is rarely found) is
        # left out of this clip, which keeps its other modalities; a clip with none left fails.
        per_window: list[dict[str, torch.Tensor]] = []
        failed: dict[str, PreprocessError] = {}
        for offset, speed in offsets:
            view = warp_clip(clip, speed)
            t_end = clip_end(view) - offset
            window: dict[str, torch.Tensor] = {}
            for m in modalities:
                if m in failed or m not in view.streams:
                    continue
                try:
                    window.update(clip_tensors(view, specs, [m], t_end))
                except PreprocessError as exc:
                    failed[m] = exc
            per_window.append(window)
        kept = [m for m in per_window[0] if m not in failed]
        if not kept and failed:
            raise next(iter(failed.values()))
        for m, exc in failed.items():
            log.info("clip %s: %s left out (%s)", clip.clip_id, m, exc)
        return {m: torch.stack([w[m] for w in per_window]).half().numpy() for m in kept}

    if cache is None:
        return compute()
    key = {"windows": clip.source, "clip": clip.clip_id, "subject": clip.subject, "session": clip.session,
           "specs": spec_key, "views": [[round(o, 4), round(sp, 4)] for o, sp in offsets],
           "modalities": sorted(m for m in modalities if m in clip.streams),
           "fingerprint": _fingerprint(clip)}
    return cache.cached(key, compute)


def _fingerprint(clip: Clip) -> str:
    """A cheap content hash so a changed recording never reuses stale windows."""
    parts = {}
    for m, s in sorted(clip.streams.items()):
        data = np.ascontiguousarray(s.data)
        step = max(1, data.size // 4096)
        parts[m] = [list(data.shape), float(s.timestamps[-1]), data.reshape(-1)[::step].tobytes().hex()[:2048]]
    return config_hash(parts)
