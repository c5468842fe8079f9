#!/usr/bin/env bash
# Every row of docs/results.md: train each recipe on UTD-MHAD (train subjects 1,3,5), FSDD
# (train george, jackson, lucas), then evaluate on the test splits. ~40 min on 2 CPU cores (ABLATE_DISTILLATION=1: +6 min).
# Usage: scripts/reproduce_utd.sh [UTD_DIR] [FSDD_DIR] [RUNS_DIR]
set -euo pipefail
UTD=${1:-../shared/data/utd-mhad}
FSDD=${2:-../shared/data/fsdd}
RUNS=${3:-runs}
BIN=${BIN:-.venv/bin}
. "$(dirname "$0")/train_step.sh"

train unimodal_imu      "$RUNS/utd/imu"      --dataset utd-mhad --data "$UTD"
train unimodal_video    "$RUNS/utd/video"    --dataset utd-mhad --data "$UTD" \
  --set "init.0.checkpoint=$RUNS/utd/imu/model.safetensors"
# optional (+6 min, outside the 45-min budget): the video specialist without the IMU term
if [ "${ABLATE_DISTILLATION:-0}" = 1 ]; then
  train unimodal_video  "$RUNS/utd/video-plain" --dataset utd-mhad --data "$UTD" \
    --set 'init=[]' --set 'modalities=["video"]' --set 'stages.0.modalities=["video"]' --set 'stages.0.label_modalities=null' \
    --set stages.0.align_weight=0 --set stages.0.distill_weight=0 --set 'stages.0.freeze=[]' --set 'table.label="ablation: video specialist without IMU distillation"'
fi
train manyshot_regular  "$RUNS/utd/regular"  --dataset utd-mhad --data "$UTD" \
  --set "init.0.checkpoint=$RUNS/utd/video/model.safetensors" --set "init.1.checkpoint=$RUNS/utd/imu/model.safetensors"
train manyshot_missing  "$RUNS/utd/missing"  --dataset utd-mhad --data "$UTD" \
  --set "init.0.checkpoint=$RUNS/utd/video/model.safetensors" --set "init.1.checkpoint=$RUNS/utd/imu/model.safetensors"
train manyshot_regular  "$RUNS/utd/mlp"      --dataset utd-mhad --data "$UTD" \
  --set "init.0.checkpoint=$RUNS/utd/video/model.safetensors" --set "init.1.checkpoint=$RUNS/utd/imu/model.safetensors" \
  --set 'fusion={"kind": "mlp", "dim": 128}' --set 'table.label="ablation: MLP fusion"'
train manyshot_regular  "$RUNS/utd/noalign"  --dataset utd-mhad --data "$UTD" \
  --set "init.0.checkpoint=$RUNS/utd/video/model.safetensors" --set "init.1.checkpoint=$RUNS/utd/imu/model.safetensors" \
  --set stages.0.align_weight=0 --set 'table.label="ablation: no alignment loss"'
train manyshot_zeroshot "$RUNS/utd/zeroshot" --dataset utd-mhad --data "$UTD" \
  --set "init.0.checkpoint=$RUNS/utd/imu/model.safetensors"
train fewshot_meta      "$RUNS/utd/fewshot"  --dataset utd-mhad --data "$UTD"
train unimodal_audio    "$RUNS/fsdd/audio"   --dataset fsdd --data "$FSDD"

echo "== tables"
plain=()
[ -f "$RUNS/utd/video-plain/model.safetensors" ] && plain=(--checkpoint "$RUNS/utd/video-plain/model.safetensors")
"$BIN/mmg-eval" table --dataset utd-mhad --data "$UTD" --out docs/results/utd-mhad \
  --checkpoint "$RUNS/utd/video/model.safetensors" "${plain[@]}" \
  --checkpoint "$RUNS/utd/imu/model.safetensors" \
  --checkpoint "$RUNS/utd/regular/model.safetensors" --checkpoint "$RUNS/utd/missing/model.safetensors" \
  --checkpoint "$RUNS/utd/mlp/model.safetensors" --checkpoint "$RUNS/utd/noalign/model.safetensors" \
  --checkpoint "$RUNS/utd/zeroshot/model.safetensors" \
  --checkpoint "$RUNS/utd/fewshot/model.safetensors" --checkpoint "$RUNS/utd/fewshot/stage-base-video.safetensors"
"$BIN/mmg-eval" table --dataset fsdd --data "$FSDD" --out docs/results/fsdd --checkpoint "$RUNS/fsdd/audio/model.safetensors"

echo "== late-fusion scoring (fused classifier x unimodal heads, no retraining)"
for run in regular missing; do
  for mods in video,imu imu video; do
    printf '{"run": "%s", "modalities": "%s", "result": %s}\n' "$run" "$mods" "$("$BIN/mmg-eval" accuracy \
      --checkpoint "$RUNS/utd/$run/model.safetensors" --dataset utd-mhad --data "$UTD" --modalities "$mods" \
      --classifier ensemble --json)"
  done
done | tee docs/results/utd-mhad/late_fusion.jsonl
