#!/usr/bin/env bash
# Every row of docs/results.md: train each recipe on UTD-MHAD (train subjects 1,3,5), FSDD
# (train george, jackson, lucas), then evaluate on the test splits. The runs and their order are
# scripts/results.mk; JOBS of them (default 2, one torch thread each) run side by side.
# ABLATE_DISTILLATION=1 adds the video specialist without the IMU term (outside the 45-min budget).
# Usage: scripts/reproduce_utd.sh [UTD_DIR] [FSDD_DIR] [RUNS_DIR]
set -euo pipefail
UTD=${1:-../shared/data/utd-mhad}
FSDD=${2:-../shared/data/fsdd}
RUNS=${3:-runs}
BIN=${BIN:-.venv/bin}
exec make --no-print-directory -j"${JOBS:-2}" -f "$(dirname "$0")/results.mk" \
  UTD="$UTD" FSDD="$FSDD" RUNS="$RUNS" BIN="$BIN" ABLATE_DISTILLATION="${ABLATE_DISTILLATION:-0}"
