"""What the live engine emits: one :class:`Prediction` per window, JSON-ready."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

#: The stages of ``Prediction.latency_ms`` besides ``total``, in the order they run.
LATENCY_STAGES: tuple[str, ...] = ("fetch", "preprocess", "encode_fuse", "post")


@dataclass
class Prediction:
    """One engine output.

    Attributes:
        t: end of the window (host monotonic seconds of the newest sample used).
        top: top-k ``{"label", "p", "kind"}`` (kind ``base`` or ``custom``), best first, smoothed.
        label: ``top[0]["label"]``, or ``"unknown"`` when its probability is below the threshold.
        modalities: the modalities whose encoders produced this prediction.
        latency_ms: ``total`` and per stage (:data:`LATENCY_STAGES`).
        skipped: windows skipped so far because inference was slower than the stride.
        seq: 1 for the first prediction, then counting.
        emitted: host time at which the prediction was made (``emitted - t`` is its age).
        coverage: coverage of each considered modality's window in ``[0, 1]``.
        t_source: for a replayed recording, ``t`` on the recording's own clock (its timestamps,
            as its labelled segments use them); None for live devices.
        idle: why each streamed modality that did not take part was left out (e.g. ``video``: a
            colour camera and a depth-trained encoder; ``pose``: no person in the window).
        no_action: the answer is "nothing is happening" (``label`` is
            :data:`~mmg_live.no_action.NO_ACTION`): a state, not an action.
    """

    t: float
    top: list[dict]
    label: str
    modalities: list[str]
    latency_ms: dict[str, float]
    skipped: int = 0
    seq: int = 0
    emitted: float = 0.0
    coverage: dict[str, float] = field(default_factory=dict)
    t_source: float | None = None
    idle: dict[str, str] = field(default_factory=dict)
    no_action: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats rounded for readability; ``t_source`` null when unknown)."""
        out = asdict(self)
        out["top"] = [{**e, "p": round(float(e["p"]), 5)} for e in self.top]
        out["latency_ms"] = {k: round(float(v), 3) for k, v in self.latency_ms.items()}
        out["coverage"] = {k: round(float(v), 3) for k, v in self.coverage.items()}
        out["age_ms"] = round((self.emitted - self.t) * 1000.0, 3)
        out["t_source"] = None if self.t_source is None else round(float(self.t_source), 6)
        return out

    def to_json(self) -> str:
        """One JSON object on one line: ``t``, ``t_source``, ``top``, ``label``, ``modalities``, ``latency_ms``, ..."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


#: Receives each prediction, on the engine's worker thread.
PredictionCallback = Callable[[Prediction], None]
