#!/usr/bin/env bash
# Regenerate docs/screenshot.png from the real app under Xvfb.
#
# usage: scripts/screenshot.sh [-o OUT.png] [-t SECONDS] [-c AT] [--] MMG_LIVE_ARGS...
#   e.g. scripts/screenshot.sh --demo
#        scripts/screenshot.sh --replay /tmp/utd_a1 --checkpoint runs/utd/missing/model.safetensors
# The app runs for SECONDS (default 12) with --seconds; the screen is captured AT seconds after the
# launch (default: 2 s before it quits; a short replay needs an earlier AT, while it still plays).
# Needs Xvfb and ImageMagick's `import` (make system-deps installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshot.png
seconds=12
at=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    -t) seconds=$2; shift 2 ;;
    -c) at=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
for tool in Xvfb import; do
  command -v "$tool" >/dev/null || { echo "screenshot.sh: $tool is missing (make system-deps)" >&2; exit 2; }
done
display=99
while [[ -e /tmp/.X${display}-lock || -e /tmp/.X11-unix/X${display} ]]; do display=$((display + 1)); done
Xvfb ":${display}" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill "$xvfb" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -e /tmp/.X11-unix/X${display} ]] && break; sleep 0.05; done
export DISPLAY=":${display}" QT_QPA_PLATFORM=xcb
.venv/bin/mmg-live "$@" --seconds "$seconds" &
app=$!
sleep "${at:-$(awk -v s="$seconds" 'BEGIN { print (s > 3 ? s - 2 : 1) }')}"
import -window root "$out"
wait "$app"
echo "wrote $out"
