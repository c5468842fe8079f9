"""Smoothing of the engine's class probabilities over successive windows."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Smoother(Protocol):
    """Turns each window's probabilities into smoothed ones; ``reset`` forgets the past."""

    def __call__(self, labels: Sequence[str], probs: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class EmaSmoother:
    """Exponential moving average of the probability vector: ``s = alpha * p + (1 - alpha) * s``.

    Restarts when the label set changes (a custom action added or removed) or after ``reset``.
    """

    def __init__(self, alpha: float = 0.5) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EmaSmoother: alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._labels: tuple[str, ...] | None = None
        self._state: np.ndarray | None = None

    def __call__(self, labels: Sequence[str], probs: np.ndarray) -> np.ndarray:
        key = tuple(labels)
        if self._state is None or key != self._labels:
            self._labels, self._state = key, np.asarray(probs, np.float64).copy()
        else:
            self._state = self.alpha * np.asarray(probs, np.float64) + (1.0 - self.alpha) * self._state
        return self._state.copy()

    def reset(self) -> None:
        self._labels, self._state = None, None


class NoSmoothing:
    """Pass probabilities through unchanged."""

    def __call__(self, labels: Sequence[str], probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs, np.float64)

    def reset(self) -> None:
        pass


def make_smoother(smoothing: str | Smoother | None, alpha: float = 0.5) -> Smoother:
    """``"ema"`` → :class:`EmaSmoother` (``alpha``), ``"none"`` → :class:`NoSmoothing`, or an object
    with ``__call__(labels, probs) -> probs`` and ``reset()`` as is."""
    if smoothing == "ema":
        return EmaSmoother(alpha)
    if smoothing in ("none", None):
        return NoSmoothing()
    if isinstance(smoothing, str):
        raise ValueError(f"smoothing must be 'ema' or 'none', got {smoothing!r}")
    return smoothing
