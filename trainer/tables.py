"""``mmg-eval table``: the MMG-Ego4D tables from a set of trained runs.

Each checkpoint's recipe names its role (``table.role``: ``manyshot`` or ``fewshot``) and row
label (``table.label``). Many-shot rows report top-1 on every test modality subset the data
allows (regular, missing-modality and zero-shot settings are the cells where train and test
modalities are equal, a strict subset, or disjoint). Few-shot rows report 5-way 5-shot accuracy
± 95 % CI for every support→query combination on the novel classes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from mmg_live.checkpoint import load_checkpoint
from trainer.data.cache import Cache
from trainer.datasets import class_count, class_subset, get_dataset
from trainer.evaluate import (confusion_matrix, embeddings_subsets, few_shot, load_eval_set, modality_subsets,
                              predict_subsets, save_confusion_png, top1)


def make_tables(checkpoints: Sequence[Path], dataset: str, data: Path, out: Path,
                groups: Sequence[str] | None = None, episodes: int = 600, device: str = "auto",
                cache: Cache | None = None) -> dict:
    """Evaluate every checkpoint, write the tables (markdown, CSV, JSON, confusion PNG) to ``out``.

    ``cache``: where decoded clips and preprocessed windows are kept between checkpoints and runs.
    """
    out.mkdir(parents=True, exist_ok=True)
    mods = list(get_dataset(dataset).modalities)
    subsets = modality_subsets(mods)
    many, few, confusion_done = [], [], False
    for path in checkpoints:
        model, info = load_checkpoint(path, device=device)
        table = info.training.get("table") or {}
        role = table.get("role", "manyshot")
        label = table.get("label", info.training.get("recipe", path.parent.name))
        trained = "+".join(sorted(info.trained.fusion)) or "-"
        if role == "manyshot":
            data_set = load_eval_set(model, dataset, data, groups, mods, cache=cache)
            row = {"model": label, "train": trained, "checkpoint": str(path)}
            probs = dict(zip(map(tuple, subsets), predict_subsets(model, data_set, subsets)))
            for s in subsets:
                row["+".join(s)] = top1(probs[tuple(s)], data_set.labels)["top1"]
            row["n"] = len(data_set)
            many.append(row)
            if not confusion_done and set(info.trained.fusion) == set(mods):
                matrix = confusion_matrix(probs[tuple(mods)], data_set.labels, len(model.class_names))
                save_confusion_png(matrix, model.class_names, out / "confusion.png",
                                   f"{label}: {'+'.join(mods)} (test subjects)")
                confusion_done = True
        elif role == "fewshot":
            novel = class_subset("novel", dataset, class_count(dataset, data))
            data_set = load_eval_set(model, dataset, data, groups, mods, classes=novel, cache=cache)
            embs = dict(zip(["+".join(s) for s in subsets], embeddings_subsets(model, data_set, subsets)))
            for s in subsets:
                for q in subsets:
                    r = few_shot(embs["+".join(s)], embs["+".join(q)], data_set.labels.tolist(), episodes=episodes,
                                 query=5)
                    few.append({"model": label, "support": "+".join(s), "query": "+".join(q), **r.to_dict()})
        else:
            raise ValueError(f"{path}: unknown table role {role!r}")
    result = {"dataset": dataset, "manyshot": many, "fewshot": few}
    (out / "tables.json").write_text(json.dumps(result, indent=1))
    _write_csv(out / "manyshot.csv", many)
    _write_csv(out / "fewshot.csv", few)
    markdown = to_markdown(result, ["+".join(s) for s in subsets])
    (out / "tables.md").write_text(markdown)
    print(markdown)
    return result


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def to_markdown(result: dict, subset_names: list[str]) -> str:
    lines = [f"### Many-shot top-1 ({result['dataset']}, test split)", "",
             "| model | trained on | " + " | ".join(f"test {s}" for s in subset_names) + " | clips |",
             "|---|---|" + "---|" * len(subset_names) + "---|"]
    for r in result["manyshot"]:
        cells = " | ".join(f"{100 * r[s]:.1f}" for s in subset_names)
        lines.append(f"| {r['model']} | {r['train']} | {cells} | {r['n']} |")
    if result["fewshot"]:
        lines += ["", "### Few-shot 5-way 5-shot on novel classes (acc % ± 95 % CI)", "",
                  "| model | support → query | accuracy | episodes |", "|---|---|---|---|"]
        for r in result["fewshot"]:
            lines.append(f"| {r['model']} | {r['support']} → {r['query']} | "
                         f"{100 * r['acc']:.1f} ± {100 * r['ci95']:.1f} | {r['episodes']} |")
    return "\n".join(lines) + "\n"
