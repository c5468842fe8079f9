"""Measure a checkpoint on the real recordings and write its model card (Markdown + JSON).

``python -m trainer.model_card CKPT --utd DIR --fsdd DIR --out-dir DIR`` evaluates, with the
same functions as ``mmg-eval``:

* many-shot top-1 on UTD-MHAD test subjects 2, 4, 6 over the checkpoint's classes, for every
  subset of the modalities its classifier reads;
* 5-way 5-shot accuracy (600 episodes, 95 % CI) on the 6 novel UTD-MHAD classes for every
  support → query pair of the classifier's single modalities, and from all of them together to
  each (:func:`fewshot_pairs`);
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
from mmg_live.no_action import NO_ACTION
from mmg_live.placement import IMU_PLACEMENT, thigh_classes
from trainer.data.cache import Cache
from trainer.datasets import class_count, class_subset
from trainer.evaluate import accuracy, embeddings, few_shot, load_eval_set, modality_subsets
from trainer.mounting import fewshot_across_mountings, mounting_table



def fewshot_pairs(modalities: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """Support → query pairs of the card: all → all, all → each, then every ordered pair of
    single modalities (same-modality pairs first)."""
    every = list(modalities)
    if len(every) == 1:
        return [(every, every)]
    pairs = [(every, every)] + [(every, [m]) for m in every]
    return pairs + [([m], [m]) for m in every] + [([a], [b]) for a in every for b in every if a != b]


def measure(checkpoint: Path, utd: Path, fsdd: Path | None, episodes: int = 600) -> dict[str, Any]:
    """Every number of the card, as a JSON-ready dict."""
    model, info = load_checkpoint(checkpoint, device="cpu")
    readable = model.trained.classifier_inputs()
    out: dict[str, Any] = {"checkpoint": checkpoint.name, "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
                           "classes": list(model.class_names), "trained": model.trained.to_dict(),
                           "parameters_m": round(count_params(model) / 1e6, 2),
                           "classifier": model.config.classifier, "manyshot": [], "fewshot": []}
    cache = Cache()  # the clip cache mmg-eval uses: decoded trials and extracted pose are read once
    test = load_eval_set(model, "utd-mhad", utd, ["2", "4", "6"], readable, cache=cache)
    for mods in modality_subsets(readable):
        out["manyshot"].append({"modalities": mods, **accuracy(model, test, mods)})
    novel = class_subset("novel", "utd-mhad", class_count("utd-mhad", utd))
    data = load_eval_set(model, "utd-mhad", utd, ["1", "2", "3", "4", "5", "6"], readable, classes=novel,
                         cache=cache)
    data = data.having(readable)  # support and query embed the same clips
    pairs = fewshot_pairs(readable)
    sets = {"+".join(m): m for pair in pairs for m in pair}
    emb = {key: embeddings(model, data, mods) for key, mods in sets.items()}
    for support, query in pairs:
        res = few_shot(emb["+".join(support)], emb["+".join(query)], data.labels.tolist(), episodes=episodes)
        out["fewshot"].append({"dataset": "utd-mhad novel", "support": support, "query": query,
                               "clips": len(data), **res.to_dict()})
    if fsdd is not None and "audio" in model.trained.fusion:
        data = load_eval_set(model, "fsdd", fsdd, None, ["audio"], classes=list(range(10)), cache=cache)
        e = embeddings(model, data, ["audio"])
        res = few_shot(e, e, data.labels.tolist(), episodes=episodes)
        out["fewshot"].append({"dataset": "fsdd held-out speaker", "support": ["audio"], "query": ["audio"],
                               **res.to_dict()})
    if "imu" in model.trained.encoders:
        out["mounting"] = {**mounting_table(model, utd), "frame": model.config.specs.imu.frame,
                           "fewshot": fewshot_across_mountings(model, utd, episodes)}
    out["training"] = {k: v for k, v in info.training.items() if k != "history"}
    return out


def _mounting_section(mounting: dict[str, Any] | None) -> tuple[str, str]:
    """The placement paragraph's mounting sentences and the mounting table (Markdown)."""
    calibrate = ("`mmg-calibrate mounting` (or the GUI's calibration dialog) measures the turn from two "
                 "still arm poses, and the app undoes it.")
    if not mounting:
        return calibrate, ""
    robust = ("The IMU branch reads each window in a gravity-aligned frame (estimated from the window "
              "itself, the same way in training and live) and learned turns about gravity, so it does not "
              "depend on how the board sits on the strap; " if mounting.get("frame") == "gravity" else "")
    rows = "\n".join(f"| {r['mounting']} | {100 * r['uncalibrated']:.1f} | {100 * r['calibrated']:.1f} |"
                     for r in mounting["rows"])
    few = "\n".join(f"| {r['query']} | {100 * r['acc']:.1f} ± {100 * r['ci95']:.1f} |"
                    for r in mounting.get("fewshot", []))
    table = f"""
IMU-only top-1 % on test subjects 2, 4, 6 ({mounting['clips']} clips) with the sensor turned by a
fixed mounting rotation (accel and gyro together; `x` is the forearm axis); canonical mounting
{100 * mounting['canonical']:.1f}. Calibrated: the mounting calibration simulated from each subject's
own still hanging arm (`python -m trainer.mounting`):

| mounting | uncalibrated | calibrated |
|---|---|---|
{rows}

Custom actions across mountings: 5-way 5-shot IMU → IMU on the novel classes, support recorded at
the canonical mounting, queries at another, uncalibrated (accuracy %, mean ± 95 % CI):

| queries at | accuracy % |
|---|---|
{few}
"""
    return robust + ("a calibration restores the rest: " if robust else "") + calibrate, table


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
    no_action = NO_ACTION in metrics["classes"]
    reads = " + ".join(t["classifier_modalities"])
    thigh = thigh_classes(metrics["classes"])
    thigh_text = (f" Of its base classes, {', '.join(thigh)} were recorded with the sensor on the\nright "
                  "thigh instead, which a wrist IMU does not reproduce." if thigh else "")
    idle_phrase = ' and "no action"' if no_action else ""
    mounting_text, mounting_table_md = _mounting_section(metrics.get("mounting"))
    return f"""# Model card: mmg-live default model (`default.safetensors`)

**What it is.** The `lite` configuration of mmg-live, {metrics['parameters_m']} M trained
parameters: a small 3-D CNN on 16×64×64 gray frames with temporal-difference channels (video), a
transformer over 15 of the 33 BlazePose landmarks that MediaPipe finds in each camera frame (pose), an
IMU transformer over accel + gyro, a trained projection over a frozen pretrained speech
embedding (audio; EfficientWord-Net's ResNet-50, run by onnxruntime, not counted above), and
attention fusion over any subset of them. Its base classifier reads {reads} and knows
{len(metrics['classes'])} classes: {len(metrics['classes']) - no_action} UTD-MHAD actions{idle_phrase};
custom actions recorded in the app can use any subset of the four modalities.

**A colour webcam works through pose.** Its video branch saw only UTD-MHAD's Kinect depth maps,
rendered to 8-bit gray (`trained_on = "depth"` in its header), so the engine leaves a colour
camera's video idle and predicts from pose (estimated from the same frames), the IMU and, for
custom actions, audio. Pose was learned from landmarks that the same MediaPipe estimator found
in the rendered depth frames, the path live pose takes on colour video.

**"No action" is an answer**{'' if no_action else ' only with an idle class, which this model lacks'}. The
idle class was learned from still clips made from each training trial's first and last moment
held still (the video frame, the IMU sample and the landmarks, with the sensor's jitter added);
the app shows it as its own state, not as an action.

**Where the IMU is worn: the {IMU_PLACEMENT}**, as in UTD-MHAD.{thigh_text} A board strapped
on in another orientation reads the same motion in turned axes. {mounting_text}
Custom actions are recorded with the user's own placement, whatever it is.
{mounting_table_md}
## Data
- **UTD-MHAD** (University of Texas at Dallas Multimodal Human Action Dataset; Chen, Jafari,
  Kehtarnavaz, ICIP 2015): depth video (30 fps) + wrist/thigh inertial sensor (accel + gyro,
  ~50 Hz), 27 actions, 8 subjects × 4 trials; pose extracted from the depth frames by MediaPipe
  BlazePose (`mediapipe==0.10.21`, Apache-2.0). Trained on subjects 1, 3, 5 and only the 21
  *base* classes; the 6 *novel* classes (clap, draw x, boxing, tennis serve, walk, squat) and
  subjects 2, 4, 6 were never trained on. Licence: free for research use; cite the paper —
  check its terms before any commercial use.
- **FSDD** (Free Spoken Digit Dataset, CC BY-SA 4.0): spoken digits. The audio projection was
  trained on speakers george, jackson, lucas; nicolas is held out. The speech embedding under
  it (`efficientword-net==1.0.5`, Apache-2.0) was trained on many speakers by its authors.
  FSDD is the only real audio here, so the audio branch knows speech, not action sounds.

Base classes: {classes}.

## How it was trained
`make default-model` (= `scripts/make_default_model.sh`), all with `--set classes="base"
idle_class=true`:
1. `mmg-train unimodal_imu`, `unimodal_video` (IMU-distilled) and `unimodal_pose` (CE, the
   specialists); every run that reads the IMU sees it in the gravity frame and trains with random
   turns about gravity (`scripts/default_model.mk`);
2. `mmg-train default_utd`: from the specialists, multimodal supervised CE + alignment with
   modality dropout, then cross-modal meta-training with the prototypical loss (support and
   query from different modality sets) plus CE;
3. `mmg-train unimodal_audio` on FSDD (the projection over the frozen speech embedding), then
   `mmg-train default_audio_fusion`: prototypical episodes on audio training only the audio
   projection and the fusion's audio entry, every shared weight frozen;
4. `python -m trainer.compose ... --classifier ensemble` merges the audio parts into the
   UTD-MHAD model after checking that no shared weight changed, so the video, pose and IMU
   embeddings are exactly those of step 2, and stores the base-class scoring: {scoring}.

Trained parts: encoders {', '.join(t['encoders'])}; fusion {', '.join(t['fusion'])}; the base
classifier reads {', '.join(t['classifier_modalities'])} (audio only feeds custom actions).

## Metrics (measured by `python -m trainer.model_card`, lite config, CPU)
Many-shot top-1 on the base classes, test subjects 2, 4, 6, each clip classified from the
window ending at its last sample (what the live engine sees at the end of an action); a clip
counts for a modality set when it has all of it (pose: a person found in the window):

| modalities | top-1 % | clips |
|---|---|---|
{many}

Few-shot 5-way 5-shot on the novel classes, subjects 1–6 (5 queries per class; mean ± 95 % CI
over the episodes):

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
  camera viewpoint will lower accuracy. Depth-only video (see above); pose from colour video
  differs from pose from depth renders in ways not measured here (no labelled colour data).
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
