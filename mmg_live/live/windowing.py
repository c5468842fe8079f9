"""Live window → model tensors, through the same preprocessing the trainer uses.

The live engine reads one synchronized window ending at ``t_end`` from the buffers and hands
each live modality's raw samples to :func:`mmg_live.modalities.preprocess` with the window
``(t_end - spec.window_s, t_end]`` — exactly what :func:`trainer.windows.clip_tensors` does for
a recorded clip, so training and serving see identical tensors for identical samples.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from mmg_live.modalities import ModalitySpecs, PreprocessError, modality_window, preprocess

#: Extra time read on each side of the window: preprocessing interpolates with the nearest
#: sample just outside it, and the buffers' windows are half-open ``[t0, t1)``.
FETCH_MARGIN_S = 0.1


def fetch_length(specs: ModalitySpecs, modalities: Sequence[str]) -> float:
    """How many seconds the engine must read from the Synchronizer (window plus margins)."""
    return max(specs[m].window_s for m in modalities) + 2 * FETCH_MARGIN_S


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


def synchronizer_windows(sync, specs: ModalitySpecs, t_end: float,
                         streams: Mapping[str, str]) -> dict[str, tuple]:
    """Raw ``(data, timestamps)`` per modality from a :class:`~mmg_live.live.buffer.Synchronizer`.

    ``streams`` maps modality → buffer name. Audio arrives as ``[n, channels]``.
    """
    length = fetch_length(specs, list(streams))
    got = sync.window(t_end + FETCH_MARGIN_S, length)
    return {m: (got[name].data, got[name].timestamps) for m, name in streams.items() if name in got}
