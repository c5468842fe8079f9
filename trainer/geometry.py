"""The modality geometry a ``centre`` stage stores: per-modality centres of the unit embeddings
and orthogonal maps between modalities (centred mean fusion, see
:meth:`~mmg_live.models.mmg.MMGModel.unit_embedding`)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from mmg_live.models.mmg import MMGModel
from trainer.windows import WindowSet


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

