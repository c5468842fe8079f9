"""MMG evaluation: many-shot top-1 per modality set, few-shot episodes, the paper's tables."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mmg_live.models.mmg import Encoded, MMGModel
from mmg_live.prototypes import embed
from trainer.data.cache import Cache
from trainer.data.episodes import EpisodeSampler
from trainer.datasets import get_dataset, load_clips
from trainer.windows import WindowSet, build_window_set


def modality_subsets(modalities: Sequence[str]) -> list[list[str]]:
    """Every non-empty subset, singles first."""
    return [list(s) for r in range(1, len(modalities) + 1) for s in itertools.combinations(modalities, r)]


def _encoded_batches(model: MMGModel, data: WindowSet, modalities: Sequence[str], batch_size: int):
    """Encoded batches of window 0 (the clip end) of every clip, in order."""
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        inputs, present = data.batch(index, 0, modalities)
        yield model.encode_batch({m: x.to(device) for m, x in inputs.items()},
                                 {m: p.to(device) for m, p in present.items()})


@torch.inference_mode()
def _per_subset(model: MMGModel, data: WindowSet, subsets: Sequence[Sequence[str]], batch_size: int,
                read: Callable[[Encoded, Sequence[str]], torch.Tensor]) -> list[torch.Tensor]:
    """``read(enc, subset)`` for every subset over window 0 of every clip, each window encoded once.

    Encoders run per modality, so a modality's encoding does not depend on which others were
    encoded with it: one pass over the union serves every subset (the video encoder, by far the
    costliest, runs once instead of once per subset that has video).
    """
    union = list(dict.fromkeys(m for s in subsets for m in s))
    outs: list[list[torch.Tensor]] = [[] for _ in subsets]
    for start, enc in zip(range(0, len(data), batch_size), _encoded_batches(model, data, union, batch_size)):
        for out, subset in zip(outs, subsets):
            batch = len(next(iter(enc.present.values())))  # encode_batch refuses a batch with nothing present
            present = [enc.present[m] for m in subset if m in enc.present]
            absent = ~torch.stack(present).any(0) if present else torch.ones(batch, dtype=torch.bool)
            if bool(absent.any()):  # as encoding the subset alone would say
                rows = (start + absent.nonzero().flatten()).tolist()
                raise ValueError(f"samples {rows} have none of {'+'.join(subset)} present")
            out.append(read(enc, subset).float().cpu())
    return [torch.cat(out) for out in outs]


def predict_subsets(model: MMGModel, data: WindowSet, subsets: Sequence[Sequence[str]],
                    batch_size: int = 64) -> list[torch.Tensor]:
    """Class probabilities ``[N, C]`` (:meth:`MMGModel.class_probabilities`) on window 0 of every
    clip, one tensor per modality subset."""
    return _per_subset(model, data, subsets, batch_size, model.class_probabilities)


def predict(model: MMGModel, data: WindowSet, modalities: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Class probabilities ``[N, C]`` of one modality set (:func:`predict_subsets`)."""
    return predict_subsets(model, data, [modalities], batch_size)[0]


def embeddings_subsets(model: MMGModel, data: WindowSet, subsets: Sequence[Sequence[str]],
                       batch_size: int = 64) -> list[torch.Tensor]:
    """Normalised fused embeddings ``[N, D]`` (what prototypes are built from), one per subset."""
    return _per_subset(model, data, subsets, batch_size, lambda enc, subset: embed(model, enc, subset))


def embeddings(model: MMGModel, data: WindowSet, modalities: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Normalised fused embeddings ``[N, D]`` of one modality set (:func:`embeddings_subsets`)."""
    return embeddings_subsets(model, data, [modalities], batch_size)[0]


@dataclass
class FewShotResult:
    acc: float
    ci95: float
    episodes: int

    def to_dict(self) -> dict:
        return {"acc": round(self.acc, 4), "ci95": round(self.ci95, 4), "episodes": self.episodes}


def few_shot(support_emb: torch.Tensor, query_emb: torch.Tensor, labels: Sequence[int], way: int = 5,
             shot: int = 5, query: int = 5, episodes: int = 600, seed: int = 0) -> FewShotResult:
    """N-way K-shot accuracy with a 95 % confidence interval (1.96·std/√episodes).

    Support clips are embedded with one modality set (``support_emb``) and queries with another
    (``query_emb``); a query takes the label of its nearest prototype (class mean of support).
    """
    sampler = EpisodeSampler(list(labels), way=way, shot=shot, query=query, episodes=episodes, seed=seed)
    labels_t = torch.as_tensor(list(labels))
    accs = []
    for support_idx, query_idx, _ in sampler:
        s = support_emb[torch.as_tensor(support_idx)]
        q = query_emb[torch.as_tensor(query_idx)]
        s_lab, q_lab = labels_t[torch.as_tensor(support_idx)], labels_t[torch.as_tensor(query_idx)]
        cls = torch.as_tensor(sorted(set(s_lab.tolist())))
        protos = torch.stack([s[s_lab == c].mean(0) for c in cls])
        pred = cls[torch.cdist(q, protos).argmin(1)]
        accs.append(float((pred == q_lab).float().mean()))
    acc = np.asarray(accs)
    ci95 = float(1.96 * acc.std(ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else 0.0
    return FewShotResult(float(acc.mean()), ci95, len(acc))


def load_eval_set(model: MMGModel, dataset: str, data: Path, groups: Sequence[str] | None,
                  modalities: Sequence[str], classes: Sequence[int] | None = None,
                  cache: Cache | None = None, class_names: Sequence[str] | None = None) -> WindowSet:
    """Test clips preprocessed with the checkpoint's own specs, labels mapped to its classes.

    ``classes`` (dataset class indices) keeps only those classes with their ORIGINAL labels
    (few-shot on novel classes); otherwise labels are mapped by class name onto the model's
    classes and clips of unknown classes are dropped.
    """
    entry = get_dataset(dataset)
    if groups is None:
        groups = entry.default_groups("test")
    # Load every stream the data set and the model share, whichever subset is evaluated: a
    # clip's end (where its evaluated window ends) is its latest sample over the loaded streams,
    # so `accuracy --modalities video` and the table's video column must see the same windows.
    # Only the requested modalities are preprocessed. Pose is loaded only for a model trained on
    # it: it is extracted from the video (minutes per data set when not cached) and shares the
    # video's clock, so it never moves a clip's end when video is loaded.
    shared = [m for m in entry.modalities
              if m in model.modalities and (m != "pose" or "pose" in model.trained.encoders)]
    loaded = load_clips(dataset, data, None if groups is None else [str(g) for g in groups],
                        list(dict.fromkeys([*modalities, *shared])), cache, class_names=class_names)
    clips = loaded.clips
    if classes is not None:
        keep = set(classes)
        clips = [c for c in clips if c.label in keep]
    else:
        index = {name: i for i, name in enumerate(model.class_names)}
        mapped = []
        for c in clips:
            name = loaded.class_names[c.label] if c.label is not None else None
            if name in index:
                c.label = index[name]
                mapped.append(c)
        clips = mapped
    return build_window_set(clips, model.config.specs, list(modalities), [0.0], cache)


def accuracy(model: MMGModel, data: WindowSet, modalities: Sequence[str]) -> dict:
    """Top-1 of ``modalities`` over the clips that have all of them."""
    data = data.having(modalities)
    return top1(predict(model, data, modalities), data.labels)


def top1(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """``{"top1": <0..1>, "n": <clips>}`` of class probabilities ``[N, C]`` against ``labels``."""
    correct = (probs.argmax(1) == labels).float()
    return {"top1": round(float(correct.mean()), 4), "n": int(len(correct))}


def confusion_matrix(probs: torch.Tensor, labels: torch.Tensor, n_classes: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts of class probabilities ``[N, C]`` against ``labels``."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(labels.tolist(), probs.argmax(1).tolist()):
        matrix[t, p] += 1
    return matrix


def save_confusion_png(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 9))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                    color="white" if v > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
