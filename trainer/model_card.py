"""Measure a checkpoint on the real recordings and write its model card (Markdown + JSON).

``python -m trainer.model_card CKPT --utd DIR --fsdd DIR --out-dir DIR`` evaluates, with the
same functions as ``mmg-eval``:

* many-shot top-1 on UTD-MHAD test subjects 2, 4, 6 over the checkpoint's classes, for every
  subset of the modalities its classifier reads;
* 5-way 5-shot accuracy (600 episodes, 95 % CI) on the 6 novel UTD-MHAD classes for every
  support → query pair of video, IMU and both;
* 5-way 5-shot on FSDD's held-out speaker from audio alone (how well sound-based custom
  actions can work with its audio entry);

and writes ``MODEL_CARD.md`` and ``model_card.json`` (the numbers) into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from mmg_live.checkpoint import load_checkpoint
from mmg_live.models.profile import count_params
from trainer.datasets import class_count, class_subset
from trainer.evaluate import accuracy, embeddings, few_shot, load_eval_set, modality_subsets

PAIRS = [(["video", "imu"], ["video", "imu"]), (["video", "imu"], ["imu"]), (["video", "imu"], ["video"]),
         (["video"], ["imu"]), (["imu"], ["video"]), (["imu"], ["imu"]), (["video"], ["video"])]


def measure(checkpoint: Path, utd: Path, fsdd: Path | None, episodes: int = 600) -> dict[str, Any]:
    """Every number of the card, as a JSON-ready dict."""
    model, info = load_checkpoint(checkpoint, device="cpu")
    readable = model.trained.classifier_inputs()
    out: dict[str, Any] = {"checkpoint": checkpoint.name, "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
                           "classes": list(model.class_names), "trained": model.trained.to_dict(),
                           "parameters_m": round(count_params(model) / 1e6, 2),
                           "classifier": model.config.classifier, "manyshot": [], "fewshot": []}
    for mods in modality_subsets(readable):
        data = load_eval_set(model, "utd-mhad", utd, ["2", "4", "6"], mods)
        out["manyshot"].append({"modalities": mods, **accuracy(model, data, mods)})
    novel = class_subset("novel", "utd-mhad", class_count("utd-mhad", utd))
    data = load_eval_set(model, "utd-mhad", utd, ["1", "2", "3", "4", "5", "6"], ["video", "imu"], classes=novel)
    emb = {"+".join(m): embeddings(model, data, m) for m in (["video"], ["imu"], ["video", "imu"])}
    for support, query in PAIRS:
        res = few_shot(emb["+".join(support)], emb["+".join(query)], data.labels.tolist(), episodes=episodes)
        out["fewshot"].append({"dataset": "utd-mhad novel", "support": support, "query": query, **res.to_dict()})
    if fsdd is not None and "audio" in model.trained.fusion:
        data = load_eval_set(model, "fsdd", fsdd, None, ["audio"], classes=list(range(10)))
        e = embeddings(model, data, ["audio"])
        res = few_shot(e, e, data.labels.tolist(), episodes=episodes)
        out["fewshot"].append({"dataset": "fsdd held-out speaker", "support": ["audio"], "query": ["audio"],
                               **res.to_dict()})
    out["training"] = {k: v for k, v in info.training.items() if k != "history"}
    return out


def render(metrics: dict[str, Any]) -> str:
    """The Markdown model card."""
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    many = "\n".join(f"| {' + '.join(r['modalities'])} | {pct(r['top1'])} | {r['n']} |" for r in metrics["manyshot"])
    few = "\n".join(f"| {r['dataset']} | {' + '.join(r['support'])} | {' + '.join(r['query'])} | "
                    f"{pct(r['acc'])} ± {pct(r['ci95'])} | {r['episodes']} |" for r in metrics["fewshot"])
    classes = ", ".join(metrics["classes"])
    t = metrics["trained"]
    scoring = ("the geometric mean of the fused classifier and the unimodal heads of the live "
               "modalities (late fusion)" if metrics.get("classifier") == "ensemble" else "the fused classifier")
    return f"""# Model card: mmg-live default model (`default.safetensors`)

**What it is.** The `lite` configuration of mmg-live (small 3-D CNN on 16×64×64 gray frames
with temporal-difference channels, AST-style audio transformer on 128-bin log-mel fbank, IMU
transformer over accel+gyro patches, attention fusion), {metrics['parameters_m']} M parameters.
It recognises {len(metrics['classes'])} UTD-MHAD actions from video, IMU or both, and embeds
any subset of video, audio and IMU into one space for custom actions recorded in the app.

**Its video branch saw depth, not RGB.** UTD-MHAD's Kinect depth maps, rendered to 8-bit gray
(near = bright), are its only video. A colour webcam's frames look different: expect the base
classes to work from the IMU and from depth-like input; use custom actions (enrolled from your
own camera) for everything else.

## Data
- **UTD-MHAD** (University of Texas at Dallas Multimodal Human Action Dataset; Chen, Jafari,
  Kehtarnavaz, ICIP 2015): depth video (30 fps) + wrist/thigh inertial sensor (accel + gyro,
  ~50 Hz), 27 actions, 8 subjects × 4 trials. Trained on subjects 1, 3, 5 and only the 21 *base*
  classes; the 6 *novel* classes (clap, draw x, boxing, tennis serve, walk, squat) and subjects
  2, 4, 6 were never trained on. Licence: free for research use; cite the paper — check its
  terms before any commercial use.
- **FSDD** (Free Spoken Digit Dataset, CC BY-SA 4.0): spoken digits. The audio encoder was
  trained on speakers george, jackson, lucas; nicolas is held out. It is the only real audio
  available to this project, so the audio branch knows speech-like sounds, not actions.

Base classes: {classes}.

## How it was trained
`make default-model` (= `scripts/make_default_model.sh`):
1. `mmg-train unimodal_imu` and `unimodal_video` with `--set classes="base"` (CE, specialists);
2. `mmg-train default_utd`: from the specialists, multimodal supervised CE + 0.1 · alignment
   (video anchor vs IMU) with 50 % modality dropout, then cross-modal meta-training with the
   prototypical loss (support and query from different modality sets) plus CE;
3. `mmg-train unimodal_audio` on FSDD, then `mmg-train default_audio_fusion`: prototypical
   episodes on audio training only the audio encoder and the fusion's audio entry, every
   shared weight frozen;
4. `python -m trainer.compose ... --classifier ensemble` merges the audio parts into the
   UTD-MHAD model after checking that no shared weight changed, so video + IMU embeddings are
   exactly those of step 2, and stores the base-class scoring: {scoring}.

Trained parts: encoders {', '.join(t['encoders'])}; fusion {', '.join(t['fusion'])}; the base
classifier reads {', '.join(t['classifier_modalities'])} (audio only feeds custom actions).

## Metrics (measured by `python -m trainer.model_card`, lite config, CPU)
Many-shot top-1 on the base classes, test subjects 2, 4, 6, each clip classified from the
window ending at its last sample (what the live engine sees at the end of an action):

| modalities | top-1 % | clips |
|---|---|---|
{many}

Few-shot 5-way 5-shot (5 queries per class; mean ± 95 % CI over the episodes):

| data | support | query | accuracy % | episodes |
|---|---|---|---|---|
{few}

Rows whose support and query differ are the MMG cross-modal protocol (prototypes from one
modality set, queries from another). The app's custom actions do not depend on them when the
examples were recorded with the query's modality: it keeps each example's embedding for every
subset of the modalities it was recorded with and compares a query on the largest subset both
share, so an action enrolled with video + IMU and later seen by the camera alone is matched
video to video.

## Limits
- Six people performing scripted actions in one lab; different sensor placement, speed or
  camera viewpoint will lower accuracy. Depth-only video (see above).
- The audio branch was never trained on action sounds.
- Checkpoint SHA-256: `{metrics['sha256']}`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--utd", type=Path, required=True, help="UTD-MHAD root")
    parser.add_argument("--fsdd", type=Path, help="FSDD root (for the audio few-shot row)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=600)
    args = parser.parse_args(argv)
    metrics = measure(args.checkpoint, args.utd, args.fsdd, args.episodes)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "model_card.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (args.out_dir / "MODEL_CARD.md").write_text(render(metrics))
    print(render(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
