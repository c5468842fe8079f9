# Sourced by the scripts that chain mmg-train runs: `train RECIPE OUT [mmg-train args...]` runs one
# recipe quietly (held-out top-1 only after each stage's last epoch), prints its wall time, and
# resumes from OUT when it was interrupted. Needs BIN (the venv's bin folder).
train() {
  local recipe=$1 out=$2
  shift 2
  echo "== $recipe -> $out"
  /usr/bin/time -f "   %e s" "$BIN/mmg-train" "$recipe" --quiet --eval-every 0 --out "$out" "$@"
}
