#!/usr/bin/env bash
# The app's default model (mmg_live/assets/default.safetensors) and its model card, from the
# real recordings. The runs and their order are scripts/default_model.mk; JOBS of them (default 2)
# run side by side on THREADS torch threads each (default 1); every run resumes from RUNS_DIR.
# Usage: scripts/make_default_model.sh [UTD_DIR] [FSDD_DIR] [RUNS_DIR]
set -euo pipefail
UTD=${1:-../shared/data/utd-mhad}
FSDD=${2:-../shared/data/fsdd}
RUNS=${3:-runs}
BIN=${BIN:-.venv/bin}
exec make --no-print-directory -j"${JOBS:-2}" -f "$(dirname "$0")/default_model.mk" \
  UTD="$UTD" FSDD="$FSDD" RUNS="$RUNS" BIN="$BIN" THREADS="${THREADS:-1}"
