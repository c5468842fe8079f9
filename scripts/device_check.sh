#!/usr/bin/env bash
# One prepared check on a CUDA machine: a fresh checkout, no internet, no data sets.
#
# Usage, from anywhere:  OUT=/some/folder scripts/device_check.sh
#   OUT       where every step's output goes (default /tmp/mmg-device-check); at most 7 files:
#             summary.txt, 01-setup.txt, 02-test_cuda.txt, 03-live_paper_cuda.txt,
#             04-live_lite_cuda.txt, 05-encoders_cuda.txt, 06-encoders_cpu.txt
#   BUDGET_S  the whole script's wall-clock budget (default 360); every step runs under
#             `timeout`, clamped to what is left, and is skipped with under 15 s left
#   PAPER_BASELINE_S/PAPER_FULL_S, LITE_BASELINE_S/LITE_FULL_S  live benchmark phases
#             (default 20/30 and 10/20 s)
#
# Python: tries `make venv APT_PACKAGES=` (the pinned stack from a local wheel store, without
# the GUI/audio Debian packages, which need the network and are not used here); if that fails
# and python3 already imports torch, makes `.venv` with --system-site-packages and installs
# this package into it with `pip install -e . --no-deps` (else puts this checkout on PYTHONPATH;
# with no venv at all, runs python3 itself). Wheels in `.whl/` (carry them: the paper config's
# MViT-B needs pytorchvideo, benchmarks/encoders.py needs fvcore; both are pure Python) are
# installed with --no-index --no-deps. Make them here with
#   pip wheel --no-deps -w .whl pytorchvideo==0.1.5 fvcore==0.1.5.post20221221 iopath==0.1.10 \
#     yacs==0.1.8 termcolor==3.3.0 parameterized==0.9.0
# Every action is printed.
#
# Steps, most important first: nvidia-smi + torch.cuda info, tests/test_cuda.py, the live
# benchmark for the paper config on CUDA, then for lite on CUDA, per-encoder CUDA latency,
# benchmarks/encoders.py (CPU latency + FLOPs; it has no --device flag).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/mmg-device-check}
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-360}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg QT_QPA_PLATFORM=offscreen
# no network there: let pip give up at once instead of retrying for minutes
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_RETRIES=0 PIP_TIMEOUT=5 PIP_DEFAULT_TIMEOUT=5
FAILED=0
PY=""

elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[$(elapsed)s] $*" | tee -a "$SUMMARY"; }

# limit_for WANTED: WANTED clamped to the budget left (minus a margin); 0 when under 15 s are left.
limit_for() {
  local left=$(( BUDGET_S - $(elapsed) - 5 ))
  if (( left < 15 )); then echo 0; elif (( $1 < left )); then echo "$1"; else echo "$left"; fi
}

# lim WANTED: limit_for, but at least 1 (timeout 0 would mean no limit at all).
lim() { local l; l=$(limit_for "$1"); if (( l > 0 )); then echo "$l"; else echo 1; fi; }

# step NAME WANTED_S CMD...: run CMD under timeout into $OUT/NAME.txt, log the outcome, show its tail.
step() {
  local name=$1 wanted=$2; shift 2
  local limit; limit=$(limit_for "$wanted")
  if (( limit == 0 )); then log "SKIP    $name: budget of ${BUDGET_S}s spent"; FAILED=1; return 0; fi
  local file="$OUT/$name.txt" t0; t0=$(date +%s)
  { echo "\$ $*"; echo "# limit ${limit}s"; } > "$file"
  timeout -k 5 "$limit" "$@" >> "$file" 2>&1
  local rc=$? status=OK
  if (( rc == 124 || rc == 137 )); then status=TIMEOUT; FAILED=1
  elif (( rc != 0 )); then status="FAIL(rc=$rc)"; FAILED=1; fi
  log "$(printf '%-7s' "$status") $name: $(( $(date +%s) - t0 ))s of ${limit}s -> $file"
  echo "----- tail of $name -----"
  tail -n 20 "$file" | cut -c1-250
  echo "-------------------------"
}

# run_logged CMD...: print CMD, run it; on failure show only the last lines of its output.
run_logged() {
  echo "\$ $*"
  local log; log=$(mktemp /tmp/mmg-setup.XXXXXX)
  "$@" > "$log" 2>&1
  local rc=$?
  if (( rc != 0 )); then echo "  (rc=$rc) ..."; tail -n 6 "$log" | sed 's/^/  /'; fi
  rm -f "$log"
  return "$rc"
}

python_imports_torch() { [ -n "$1" ] && "$1" -c "import torch" >/dev/null 2>&1; }

# try_make_venv: the README's route (pinned torch from a local wheel store); 0 when .venv imports torch.
try_make_venv() {
  echo "setup: local wheel store /opt/wheels: $(ls /opt/wheels 2>/dev/null | grep -i '^torch-' | head -2 | tr '\n' ' ')"
  echo "setup: trying 'make venv APT_PACKAGES=' (limit $(lim 200)s)"
  run_logged timeout -k 5 "$(lim 200)" make venv APT_PACKAGES= && python_imports_torch .venv/bin/python
}

# make_system_venv: .venv on top of python3's packages (linking them when python3 is itself a venv).
make_system_venv() {
  run_logged python3 -m venv .venv --system-site-packages || return 1
  if ! python_imports_torch .venv/bin/python; then
    # python3 is itself a venv (e.g. /opt/torch/.venv): its packages are not "system" ones
    local purelib
    purelib=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") || return 1
    python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$purelib/_base_site_packages.pth"
    echo "setup: linked python3's site-packages into .venv via $purelib/_base_site_packages.pth"
  fi
  python_imports_torch .venv/bin/python
}

# install_project: pip install -e . --no-deps into $PY, else this checkout on PYTHONPATH.
install_project() {
  if [ "$PY" != python3 ] && run_logged timeout -k 5 "$(lim 90)" "$PY" -m pip install -q --no-deps --no-build-isolation -e .; then
    echo "setup: pip install -e . --no-deps OK"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "setup: this checkout on PYTHONPATH=$PYTHONPATH (no pip install -e .)"
  fi
}

# install_wheels: the carried .whl/*.whl (pytorchvideo, fvcore and their small pure-Python needs).
install_wheels() {
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "setup: no .whl/ folder carried (the paper config needs pytorchvideo; encoders.py needs fvcore)"; return 0
  fi
  local target=()
  if [ "$PY" = python3 ]; then target=(--target /tmp/mmg-site); export PYTHONPATH="/tmp/mmg-site:${PYTHONPATH:-}"; fi
  run_logged timeout -k 5 "$(lim 90)" "$PY" -m pip install -q --no-index --no-deps --no-compile "${target[@]}" .whl/*.whl \
    && echo "setup: installed the carried wheels: $(cd .whl && ls -- *.whl | tr '\n' ' ')" \
    || echo "setup: installing the carried wheels failed"
}

# setup_python: sets PY to a Python that imports torch and this package; prints what it did.
setup_python() {
  if python_imports_torch .venv/bin/python && .venv/bin/python -c "import mmg_live" >/dev/null 2>&1; then
    echo "setup: using the existing .venv"; PY=.venv/bin/python; install_wheels; return 0
  fi
  local had_venv=0; [ -e .venv ] && had_venv=1
  if try_make_venv; then
    echo "setup: make venv OK"; PY=.venv/bin/python; install_wheels; return 0
  fi
  echo "setup: make venv failed"
  if ! python_imports_torch python3; then
    echo "setup: python3 does not import torch either; nothing to run the checks with"; return 1
  fi
  if (( had_venv == 0 )); then rm -rf .venv; fi  # only what make venv just left behind
  if make_system_venv; then
    echo "setup: made .venv with --system-site-packages"; PY=.venv/bin/python
  else
    echo "setup: could not make a venv on top of python3; using python3 itself"; PY=python3
  fi
  install_project
  install_wheels
}

# torch_info: versions, the GPU, and which of the optional packages import.
torch_info() {
  timeout -k 5 "$(lim 60)" "$PY" - <<'EOF'
import importlib, platform, sys
import torch
print(f"python {sys.version.split()[0]} ({sys.executable}), {platform.platform()}")
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print(f"cuda available: {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}, CPU threads: {torch.get_num_threads()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
    print(f"bf16 supported: {torch.cuda.is_bf16_supported()}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
          f"TF32 cudnn {torch.backends.cudnn.allow_tf32}")
for name in ("mmg_live", "pytorchvideo", "fvcore", "torchvision", "torchaudio", "safetensors", "scipy", "cv2",
             "soundfile", "zmq", "PyQt6", "pytest", "pytest_timeout"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name:<15} {getattr(mod, '__version__', 'ok')}")
    except Exception as exc:
        print(f"  {name:<15} MISSING ({type(exc).__name__}: {exc})")
EOF
}

# ---- 1. machine and Python ----------------------------------------------------------------------
SETUP="$OUT/01-setup.txt"
{
  echo "== nvidia-smi"; timeout 20 nvidia-smi || echo "nvidia-smi failed"
  echo "== python3: $(command -v python3) $(python3 -V 2>&1)"
  setup_python || echo "setup: FAILED"
  if [ -n "$PY" ]; then echo "== torch ($PY)"; torch_info; fi
} > "$SETUP" 2>&1
grep '^setup:' "$SETUP" | cut -c1-300 >> "$SUMMARY"
log "setup done (PY=${PY:-none}) -> $SETUP"
grep -v '^  ' "$SETUP" | cut -c1-250 | tail -n 40
if [ -z "$PY" ] || ! python_imports_torch "$PY"; then log "no Python with torch: stopping"; exit 1; fi

# ---- 2. CUDA tests ------------------------------------------------------------------------------
PYTEST_OPTS=(-v -rA -p no:cacheprovider --durations=10)
"$PY" -c "import pytest_timeout" >/dev/null 2>&1 || PYTEST_OPTS+=(-o "addopts=-ra")  # pyproject's --timeout
step 02-test_cuda 150 "$PY" -m pytest tests/test_cuda.py "${PYTEST_OPTS[@]}"

# ---- 3-4. live benchmark on CUDA ----------------------------------------------------------------
step 03-live_paper_cuda 120 "$PY" benchmarks/live.py --config paper --device cuda \
  --baseline-seconds "${PAPER_BASELINE_S:-20}" --seconds "${PAPER_FULL_S:-30}"
step 04-live_lite_cuda 75 "$PY" benchmarks/live.py --config lite --device cuda \
  --baseline-seconds "${LITE_BASELINE_S:-10}" --seconds "${LITE_FULL_S:-20}"

# ---- 5. per-encoder latency on CUDA (benchmarks/encoders.py measures the CPU only) --------------
ENC_CUDA=$(mktemp /tmp/encoders_cuda.XXXXXX.py)
cat > "$ENC_CUDA" <<'EOF'
"""Batch-1 latency (ms, p50/p95 of 20) per encoder, the fusion and the whole forward on CUDA, fp32 and bf16."""
import json
import numpy as np
import torch
from mmg_live.models.mmg import build_model
from mmg_live.models.profile import latency_ms

def timed(fn, amp):
    def call():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            fn()
        torch.cuda.synchronize()
    t = latency_ms(call, repeats=20, warmup=3)
    return round(float(np.percentile(t, 50)), 2), round(float(np.percentile(t, 95)), 2)

results = {"device": torch.cuda.get_device_name(0)}
for name in ("lite", "paper"):
    torch.manual_seed(0)
    model = build_model(name, ["a", "b"]).cuda().eval()
    x = {m: torch.randn(1, *model.config.specs[m].output_shape(), device="cuda") for m in model.modalities}
    rows = {}
    with torch.inference_mode():
        for m in model.modalities:
            rows[m] = {p: timed(lambda m=m: model.encoders[m](x[m]), p == "bf16") for p in ("fp32", "bf16")}
        enc = model.encode_batch(x)
        rows["fusion"] = {p: timed(lambda: model.fuse(enc), p == "bf16") for p in ("fp32", "bf16")}
        rows["forward"] = {p: timed(lambda: model(x), p == "bf16") for p in ("fp32", "bf16")}
    print(f"config {name} on {results['device']}: p50 / p95 ms at batch 1")
    for part, r in rows.items():
        print(f"  {part:<8} fp32 {r['fp32'][0]:>8} / {r['fp32'][1]:<8}  bf16 {r['bf16'][0]:>8} / {r['bf16'][1]}")
    results[name] = rows
    del model
    torch.cuda.empty_cache()
print(json.dumps(results))
EOF
step 05-encoders_cuda 60 "$PY" "$ENC_CUDA"
rm -f "$ENC_CUDA"

# ---- 6. benchmarks/encoders.py (CPU latency on this machine's cores + FLOPs) --------------------
step 06-encoders_cpu 60 env MMG_BENCH_REPEATS=10 MMG_BENCH_PAPER_REPEATS=3 "$PY" benchmarks/encoders.py

log "done in $(elapsed)s of ${BUDGET_S}s; $( ((FAILED)) && echo 'some steps FAILED, timed out or were skipped' || echo 'every step OK')"
echo "===== summary ($SUMMARY) ====="
cat "$SUMMARY"
exit "$FAILED"
