"""Live buffers → model tensors, through the same preprocessing the trainer uses.

:func:`read_window` is the one path from the ring buffers to the model's inputs: for a window
ending at ``t_end`` it reads each stream's samples (:func:`fetch_window`), decides whether the
stream is live with the one coverage check (:func:`mmg_live.modalities.require_coverage`) and
hands the raw samples to :func:`mmg_live.modalities.preprocess` with the window
``(t_end - spec.window_s, t_end]`` (:func:`window_tensors`) — exactly what
:func:`trainer.windows.clip_tensors` does for a recorded clip, so training and serving see
identical tensors for identical samples. The live engine and the train/serve parity tests both
call it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from mmg_live.live.buffer import StreamBuffer
from mmg_live.modalities import (ModalitySpecs, PreprocessError, VideoSpec, modality_window, preprocess,
                                 require_coverage, video_frame_indices, window_coverage)

#: Extra time read on each side of the window: preprocessing interpolates with the nearest
#: sample just outside it, and the buffers' windows are half-open ``[t0, t1)``.
FETCH_MARGIN_S = 0.1


def fetch_length(specs: ModalitySpecs, modalities: Sequence[str]) -> float:
    """How many seconds of a buffer the longest of ``modalities``' windows reads (window plus margins)."""
    return max(specs[m].window_s for m in modalities) + 2 * FETCH_MARGIN_S


class VideoFrameSelection:
    """The ``select`` of :meth:`StreamBuffer.window_select` for video: picks the frames
    preprocessing samples (:func:`video_frame_indices`) and keeps them, or keeps why there are
    none (``error``) when the frames cover too little of the window."""

    def __init__(self, spec: VideoSpec, window: tuple[float, float]) -> None:
        self.spec, self.window = spec, window
        self.indices: np.ndarray | None = None
        self.error: str | None = None

    def __call__(self, ts: np.ndarray) -> np.ndarray:
        try:
            self.indices = video_frame_indices(ts, self.spec, self.window)
        except PreprocessError as exc:
            self.indices, self.error = np.zeros(0, dtype=np.int64), str(exc)
        return self.indices


@dataclass
class RawWindow:
    """The raw samples of one window, per modality, as read from the buffers.

    Attributes:
        samples: ``{modality: (data, timestamps)}`` of the live modalities (video: only the
            frames preprocessing samples, with their timestamps).
        rates: each live modality's nominal rate (its buffer's).
        coverage: each modality's :func:`~mmg_live.modalities.window_coverage` of its own window.
        live: the modalities whose stream covers enough of their window.
        problems: why each modality read but not usable was left out.
    """

    samples: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    live: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


def fetch_window(buffers: Mapping[str, StreamBuffer], streams: Mapping[str, str], specs: ModalitySpecs,
                 t_end: float, min_coverage: float = 0.0) -> RawWindow:
    """Read each modality's window ending at ``t_end`` from its buffer (``streams``: modality →
    buffer name, every name in ``buffers``).

    A stream is live when :func:`~mmg_live.modalities.require_coverage` accepts its samples in
    ``(t_end - window_s, t_end]`` at the buffer's nominal rate with at least ``min_coverage``
    (and at least the spec's own ``min_coverage``); only live streams' samples are returned.
    """
    out = RawWindow()
    if not streams:
        return out
    length = fetch_length(specs, list(streams))
    t1 = t_end + FETCH_MARGIN_S
    for m, name in streams.items():
        buf = buffers[name]
        window = modality_window(specs, m, t_end)
        frames = None
        if m == "video":  # copy only the frames preprocessing samples (16 of ~100)
            frames = VideoFrameSelection(specs.video, window)
            data, ts = buf.window_select(t1 - length, t1, frames)
        else:
            data, ts = buf.window(t1 - length, t1)
        out.coverage[m] = window_coverage(ts, window, buf.rate)
        try:
            require_coverage(m, ts, window, buf.rate, max(min_coverage, specs[m].min_coverage))
        except PreprocessError as exc:
            out.problems[m] = str(exc)
            continue
        out.live.append(m)
        if frames is not None and frames.error:  # as a preprocessing problem would be reported
            out.problems[m] = frames.error
            continue
        # the picked frames with their timestamps sample to themselves in preprocess_video
        out.samples[m] = (data, ts[frames.indices]) if frames is not None else (data, ts)
        out.rates[m] = buf.rate
    return out


def window_tensors(windows: Mapping[str, tuple], specs: ModalitySpecs, t_end: float,
                   sample_rates: Mapping[str, float] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Preprocess each modality's ``(data, timestamps)`` for the window ending at ``t_end``.

    Returns the tensors and, for modalities that could not be used (too little data, bad
    values), the reason — a live stream dropping out is a normal state, not an error.
    """
    tensors, problems = {}, {}
    for modality, (data, timestamps) in windows.items():
        if len(timestamps) == 0:
            problems[modality] = "no samples in the window"
            continue
        options = {}
        if modality == "audio" and sample_rates and modality in sample_rates:
            options["sample_rate"] = sample_rates[modality]
        try:
            tensors[modality] = preprocess(modality, data, timestamps, specs,
                                           modality_window(specs, modality, t_end), **options)
        except PreprocessError as exc:
            problems[modality] = str(exc)
    return tensors, problems


@dataclass
class LiveWindow:
    """What :func:`read_window` returns: the model's inputs for one window and how it went.

    Attributes:
        tensors: one preprocessed tensor per usable modality (no batch dimension, on the CPU).
        coverage: each read modality's coverage of its window.
        live: the modalities whose stream covered enough of the window.
        problems: why each read modality has no tensor.
        fetch_ms, preprocess_ms: time spent reading the buffers and preprocessing.
    """

    tensors: dict[str, torch.Tensor]
    coverage: dict[str, float]
    live: list[str]
    problems: dict[str, str]
    fetch_ms: float
    preprocess_ms: float


def read_window(buffers: Mapping[str, StreamBuffer], streams: Mapping[str, str], specs: ModalitySpecs,
                t_end: float, min_coverage: float = 0.0) -> LiveWindow:
    """The model's input tensors for the window ending at ``t_end``: :func:`fetch_window` then
    :func:`window_tensors` (see there for ``streams`` and ``min_coverage``)."""
    t0 = time.perf_counter()
    raw = fetch_window(buffers, streams, specs, t_end, min_coverage)
    t1 = time.perf_counter()
    tensors, problems = window_tensors(raw.samples, specs, t_end, raw.rates) if raw.samples else ({}, {})
    t2 = time.perf_counter()
    return LiveWindow(tensors, raw.coverage, raw.live, {**raw.problems, **problems},
                      (t1 - t0) * 1e3, (t2 - t1) * 1e3)
