"""Training losses: cross-entropy, knowledge distillation, MMG cross-modal alignment (InfoNCE), prototypical loss."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_entropy(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of ``logits [B, C]`` against integer ``labels [B]``."""
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing, ignore_index=ignore_index)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """Hinton et al.'s soft-target loss: ``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``.

    Mean over the batch; the teacher gets no gradient. ``T²`` keeps the gradient scale of the
    soft term comparable to a CE term as ``T`` changes.
    """
    t = temperature
    target = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return t * t * F.kl_div(F.log_softmax(student_logits / t, dim=-1), target, reduction="batchmean", log_target=True)


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.07) -> Tensor:
    """Symmetric InfoNCE between paired rows of ``a [B, D]`` and ``b [B, D]``.

    Rows are L2-normalised; row i of ``a`` and row i of ``b`` are the positive pair and the
    other rows of the batch are negatives. Returns ``(CE(a→b) + CE(b→a)) / 2``.
    """
    za, zb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = za @ zb.t() / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def alignment_loss(
    embeddings: dict[str, Tensor],
    present: dict[str, Tensor] | None = None,
    anchor: str = "video",
    temperature: float = 0.07,
) -> Tensor:
    """The MMG-Ego4D cross-modal alignment loss.

    The anchor modality's embedding (video) is aligned with each other modality's (audio,
    IMU) by symmetric :func:`info_nce`: the positive is the same clip/moment, the negatives
    are the other clips of the batch. For each pair only the samples where *both*
    modalities are present count; the loss is the mean over pairs with at least two such
    samples (with one there is no negative, so no signal).

    When the anchor has no present sample in the batch (or is not in ``embeddings``), the
    remaining modalities are aligned pairwise instead (every unordered pair, same rules).

    Args:
        embeddings: modality → ``[B, D]`` embeddings (all the same B and D).
        present: modality → bool ``[B]``; a missing entry means all present.
        anchor: the anchor modality.
        temperature: InfoNCE temperature τ.

    Returns:
        A scalar; zero (still attached to the graph) when no pair has two common samples.
    """
    if not embeddings:
        raise ValueError("alignment_loss: no embeddings")
    present = present or {}
    masks = {}
    for m, e in embeddings.items():
        mask = present.get(m)
        masks[m] = torch.ones(len(e), dtype=torch.bool, device=e.device) if mask is None else mask.to(torch.bool)
        if masks[m].shape != (len(e),):
            raise ValueError(f"alignment_loss: mask of {m!r} has shape {tuple(masks[m].shape)}, "
                             f"embeddings {tuple(e.shape)}")
    if anchor in embeddings and bool(masks[anchor].any()):
        pairs = [(anchor, m) for m in embeddings if m != anchor]
    else:
        pairs = list(itertools.combinations([m for m in embeddings if m != anchor], 2))
    losses = []
    for a, b in pairs:
        both = masks[a] & masks[b]
        if int(both.sum()) >= 2:
            losses.append(info_nce(embeddings[a][both], embeddings[b][both], temperature))
    if not losses:
        return sum(e.sum() for e in embeddings.values()) * 0.0
    return torch.stack(losses).mean()


def pairwise_distance(x: Tensor, y: Tensor, distance: str = "sqeuclidean") -> Tensor:
    """``[len(x), len(y)]`` distances: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"`` (1 − cos)."""
    if distance == "sqeuclidean":
        return (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)
    if distance == "euclidean":
        return torch.cdist(x, y)
    if distance == "cosine":
        return 1.0 - F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).t()
    raise ValueError(f"unknown distance {distance!r}; expected sqeuclidean, euclidean or cosine")


def prototypical_loss(
    support: Tensor,
    support_labels: Tensor,
    query: Tensor,
    query_labels: Tensor,
    distance: str = "sqeuclidean",
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Cross-modal prototypical loss.

    Prototypes are the class means of the support embeddings (embedded with one modality
    set); the logits of a query (embedded with another set) are minus its distance to each
    prototype; the loss is cross-entropy over the episode's classes.

    Args:
        support: ``[N*K, D]`` support embeddings.
        support_labels: ``[N*K]`` integer labels (any values; N distinct).
        query: ``[Q, D]`` query embeddings.
        query_labels: ``[Q]`` labels, each among ``support_labels``.
        distance: see :func:`pairwise_distance`.
        scale: logits are ``-scale * distance`` (useful with ``"cosine"``, whose distances lie in [0, 2]).

    Returns:
        ``(loss, accuracy)`` scalars; accuracy is detached.
    """
    classes, support_idx = torch.unique(support_labels, sorted=True, return_inverse=True)
    onehot = F.one_hot(support_idx, len(classes)).to(support.dtype)  # [NK, N]
    prototypes = (onehot.t() @ support) / onehot.sum(0)[:, None]
    match = query_labels[:, None] == classes[None, :]
    if not bool(match.any(1).all()):
        missing = sorted(set(query_labels[~match.any(1)].tolist()))
        raise ValueError(f"prototypical_loss: query labels {missing} have no support examples")
    target = match.float().argmax(1)
    logits = -scale * pairwise_distance(query, prototypes, distance)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(1) == target).float().mean().detach()
    return loss, accuracy
