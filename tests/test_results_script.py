"""scripts/results.mk (`make results`) and scripts/default_model.mk (`make default-model`): which
runs, in which order, two at a time.

The real mmg-train / mmg-eval / python -m trainer.* are replaced by small shell stand-ins that log their arguments,
check that every checkpoint they are told to start from exists, and write the files a real run
writes; the recipes and --set overrides they were given are then loaded by the real trainer code.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from trainer.recipe import load_recipe
from trainer.train_cli import build_parser

REPO = Path(__file__).resolve().parents[1]
RUNS = ("imu", "video", "regular", "missing", "mlp", "noalign", "zeroshot", "fewshot",
        "pose", "pose_imu", "fewshot_pose")

FAKE_TRAIN = r"""#!/usr/bin/env bash
# stand-in for mmg-train: log argv, refuse a missing init checkpoint, "train" for a moment
set -u
printf '%s\n' "$(printf '%q ' "$@")" >> "$LOG_DIR/train.argv"
recipe=$1; out=""; threads=""; args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --out) out=${args[i+1]} ;;
    --threads) threads=${args[i+1]} ;;
    --set) case ${args[i+1]} in init.*.checkpoint=*)
             ckpt=${args[i+1]#*=}; [ -f "$ckpt" ] || { echo "missing init $ckpt" >&2; exit 3; } ;; esac ;;
  esac
done
[ "$recipe" = "${FAIL_RECIPE:-}" ] && { echo "failing on purpose" >&2; exit 1; }
mkdir -p "$LOG_DIR/running"; touch "$LOG_DIR/running/$$"
ls "$LOG_DIR/running" | wc -l >> "$LOG_DIR/concurrency"
echo "$recipe $out threads=$threads omp=${OMP_NUM_THREADS:-}" >> "$LOG_DIR/train.log"
sleep 0.3
mkdir -p "$out" && touch "$out/model.safetensors"
[ "$recipe" = fewshot_meta ] && touch "$out/stage-base-video.safetensors"
rm "$LOG_DIR/running/$$"
"""

FAKE_EVAL = r"""#!/usr/bin/env bash
# stand-in for mmg-eval: `table` writes the checkpoints it got, `accuracy` prints a result
set -u
printf '%s\n' "$(printf '%q ' "$@")" >> "$LOG_DIR/eval.argv"
if [ "$1" = table ]; then
  out=""; ckpts=(); args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
      --out) out=${args[i+1]} ;;
      --checkpoint) [ -f "${args[i+1]}" ] || { echo "missing ${args[i+1]}" >&2; exit 3; }; ckpts+=("${args[i+1]}") ;;
    esac
  done
  mkdir -p "$out" && printf '%s\n' "${ckpts[@]}" > "$out/tables.md"
else
  echo '{"top1": 0.5, "n": 323}'
fi
"""


FAKE_PYTHON = r"""#!/usr/bin/env bash
# stand-in for `python -m trainer.compose BASE DONOR ... --out OUT` and
# `python -m trainer.model_card CKPT ... --out-dir DIR`: refuse missing inputs, write the outputs
set -u
printf '%s\n' "$(printf '%q ' "$@")" >> "$LOG_DIR/python.argv"
case $2 in
  trainer.compose)
    for f in "$3" "$4"; do [ -f "$f" ] || { echo "missing $f" >&2; exit 3; }; done
    out=${*: -1}; mkdir -p "$(dirname "$out")" && echo "$3 + $4" > "$out" ;;
  trainer.model_card)
    [ -f "$3" ] || { echo "missing $3" >&2; exit 3; }
    dir=""; args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = --out-dir ] && dir=${args[i+1]}; done
    echo "card of $(cat "$3") omp=${OMP_NUM_THREADS:-}" > "$dir/MODEL_CARD.md" ;;
  *) exit 2 ;;
esac
"""


def _fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("mmg-train", FAKE_TRAIN), ("mmg-eval", FAKE_EVAL), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run_make(tmp_path: Path, *extra: str, env: dict[str, str] | None = None, jobs: int = 2,
              makefile: str = "results.mk") -> subprocess.CompletedProcess:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return subprocess.run(
        ["make", "--no-print-directory", f"-j{jobs}", "-f", str(REPO / "scripts" / makefile),
         f"RUNS={tmp_path / 'runs'}", f"BIN={tmp_path / 'bin'}", f"TABLES={tmp_path / 'tables'}",
         f"ASSETS={tmp_path / 'assets'}", "UTD=/data/utd", "FSDD=/data/fsdd", *extra],
        cwd=REPO, env={**os.environ, "LOG_DIR": str(logs), **(env or {})},
        capture_output=True, text=True, timeout=120,
    )


def _train_calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "logs" / "train.argv"
    return [shlex.split(line) for line in path.read_text().splitlines()] if path.exists() else []


def _load_call(call: list[str]) -> tuple[Any, dict[str, Any]]:
    """An mmg-train command line as the trainer reads it: its arguments and the overridden recipe
    (as JSON), checked by the real recipe loader, every stage included."""
    args = build_parser().parse_args(call)
    for assignment in args.set:
        raw = assignment.split("=", 1)[1]
        if raw[:1] in ("[", "{", '"'):  # meant as JSON: a quoting slip would leave it a string
            json.loads(raw)
    return args, load_recipe(args.recipe, args.set).to_dict()


pytestmark = pytest.mark.skipif(shutil.which("make") is None or not Path("/usr/bin/time").exists(),
                                reason="needs GNU make and /usr/bin/time (make system-deps)")


def test_every_run_is_trained_once_two_at_a_time_then_the_tables(tmp_path: Path) -> None:
    _fake_bin(tmp_path)
    done = _run_make(tmp_path)
    assert done.returncode == 0, done.stderr
    runs = tmp_path / "runs"
    outs = sorted(call[call.index("--out") + 1] for call in _train_calls(tmp_path))
    assert outs == sorted([str(runs / "utd" / r) for r in RUNS] + [str(runs / "fsdd" / "audio")])
    log = (tmp_path / "logs" / "train.log").read_text().splitlines()
    assert all(line.endswith("threads=1 omp=1") for line in log), log
    # two jobs side by side (the FSDD run starts next to the IMU specialist), never more
    counts = [int(n) for n in (tmp_path / "logs" / "concurrency").read_text().split()]
    assert max(counts) == 2
    # the two lanes' order; every run started after the runs it is initialised from finished
    # (the stand-in exits 3 on a missing init checkpoint, so success already says so)
    order = [line.split()[1] for line in log]
    for lane in (("utd/imu", "utd/video", "utd/regular", "utd/missing", "utd/mlp", "utd/noalign", "utd/pose",
                  "utd/pose_imu"),
                 ("fsdd/audio", "utd/fewshot", "utd/zeroshot", "utd/fewshot_pose")):
        starts = [order.index(str(runs / r)) for r in lane]
        assert starts == sorted(starts), lane
    # the zero-shot run follows the few-shot run in lane 2, not the ablations of lane 1
    assert order.index(str(runs / "utd/zeroshot")) < order.index(str(runs / "utd/noalign"))
    # the tables: the UTD one lists the checkpoints in the documented row order
    utd_table = (tmp_path / "tables/utd-mhad/tables.md").read_text().split()
    assert utd_table == [str(runs / "utd" / r / "model.safetensors") for r in
                         ("video", "imu", "regular", "missing", "mlp", "noalign", "zeroshot", "fewshot")] \
        + [str(runs / "utd/fewshot/stage-base-video.safetensors")]
    assert (tmp_path / "tables/fsdd/tables.md").read_text().split() == [str(runs / "fsdd/audio/model.safetensors")]
    late = [json.loads(line) for line in (tmp_path / "tables/utd-mhad/late_fusion.jsonl").read_text().splitlines()]
    assert [(r["run"], r["modalities"]) for r in late] == [
        (run, mods) for run in ("regular", "missing") for mods in ("video,imu", "imu", "video")]
    assert all(r["result"] == {"top1": 0.5, "n": 323} for r in late)
    pose = [json.loads(line) for line in (tmp_path / "tables/utd-mhad/pose.jsonl").read_text().splitlines()]
    assert [(r["run"], r["modalities"], r["classifier"]) for r in pose if "modalities" in r] == [
        ("pose", "pose", "fused"), ("pose_imu", "pose", "fused"), ("pose_imu", "imu", "fused"),
        ("pose_imu", "pose,imu", "fused"), ("pose_imu", "pose,imu", "ensemble")]
    assert [(r["support"], r["query"]) for r in pose if "support" in r] == [
        ("pose", "pose"), ("pose", "imu"), ("imu", "pose"), ("imu", "imu"), ("pose,imu", "pose,imu")]
    assert all(r["result"] == {"top1": 0.5, "n": 323} for r in pose)

    # a second call trains nothing again, but makes the tables again
    (tmp_path / "logs" / "train.argv").unlink()
    (tmp_path / "logs" / "eval.argv").unlink()
    again = _run_make(tmp_path)
    assert again.returncode == 0, again.stderr
    assert _train_calls(tmp_path) == []
    assert len((tmp_path / "logs" / "eval.argv").read_text().splitlines()) == 2 + 6 + 10


@pytest.mark.parametrize("run", RUNS + ("video-plain",))
def test_each_run_alone_builds_the_checkpoints_it_starts_from(tmp_path: Path, run: str) -> None:
    # asked for one run from empty folders, make builds only its declared prerequisites: the
    # stand-in exits 3 when an init checkpoint is missing, so an undeclared one fails here
    _fake_bin(tmp_path)
    done = _run_make(tmp_path, "ABLATE_DISTILLATION=1", str(tmp_path / "runs" / "utd" / run / "model.safetensors"),
                     jobs=16)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "utd" / run / "model.safetensors").exists()


def test_the_recipes_and_overrides_it_passes_load_into_valid_stages(tmp_path: Path) -> None:
    _fake_bin(tmp_path)
    done = _run_make(tmp_path, "ABLATE_DISTILLATION=1")
    assert done.returncode == 0, done.stderr
    calls = _train_calls(tmp_path)
    assert len(calls) == len(RUNS) + 2  # + FSDD + the plain-video ablation
    for call in calls:
        args, recipe = _load_call(call)
        if args.out.name == "mlp":
            assert recipe["fusion"] == {"kind": "mlp", "dim": 128}
        if args.out.name == "video-plain":
            assert recipe["init"] == [] and recipe["stages"][0]["distill_weight"] == 0


def test_a_failed_run_stops_make_with_an_error_and_no_tables(tmp_path: Path) -> None:
    _fake_bin(tmp_path)
    done = _run_make(tmp_path, env={"FAIL_RECIPE": "unimodal_video"})
    assert done.returncode != 0
    assert "failing on purpose" in done.stderr
    runs = tmp_path / "runs" / "utd"
    assert (runs / "imu" / "model.safetensors").exists()
    # nothing that needs the video specialist ran, nor any table
    assert not any((runs / r / "model.safetensors").exists() for r in ("video", "regular", "missing", "mlp", "noalign"))
    assert not (tmp_path / "tables" / "utd-mhad" / "tables.md").exists()
    assert not (tmp_path / "tables" / "utd-mhad" / "late_fusion.jsonl").exists()


DEFAULT_RUNS = ("default/imu", "default/video", "default/pose", "default/utd", "fsdd/audio", "default/audio")


def test_default_model_runs_once_each_fsdd_beside_the_utd_chain_then_merge_and_card(tmp_path: Path) -> None:
    _fake_bin(tmp_path)
    done = _run_make(tmp_path, makefile="default_model.mk")
    assert done.returncode == 0, done.stderr
    runs = tmp_path / "runs"
    log = (tmp_path / "logs" / "train.log").read_text().splitlines()
    order = [line.split()[1] for line in log]
    assert sorted(order) == sorted(str(runs / r) for r in DEFAULT_RUNS)
    assert all(line.endswith("threads=1 omp=1") for line in log), log
    counts = [int(n) for n in (tmp_path / "logs" / "concurrency").read_text().split()]
    assert max(counts) == 2  # the FSDD specialist runs beside the UTD-MHAD chain
    chain = [order.index(str(runs / r))
             for r in ("default/imu", "default/video", "default/pose", "default/utd", "default/audio")]
    assert chain == sorted(chain)
    assert order.index(str(runs / "fsdd/audio")) < order.index(str(runs / "default/audio"))
    # every recipe + override loads; the video step is the recipe as it is (no overrides left)
    for call in _train_calls(tmp_path):
        args, recipe = _load_call(call)
        name = str(args.out.relative_to(runs))
        if name in ("default/imu", "default/video", "default/pose", "default/utd"):
            assert recipe["classes"] == "base", name  # the novel classes stay unseen
            assert recipe["idle_class"] is True, name  # and every step knows "no action"
        if name == "default/video":
            assert recipe["stages"][0]["fusion_detach"] is True
            assert not [a for a in args.set if a.startswith("stages.")]
    # merged from the chain's two ends, then measured on two threads
    assert (tmp_path / "assets/default.safetensors").read_text().split() == [
        str(runs / "default/utd/model.safetensors"), "+", str(runs / "default/audio/model.safetensors")]
    card = (tmp_path / "assets/MODEL_CARD.md").read_text()
    assert card.startswith(f"card of {runs / 'default/utd/model.safetensors'}") and card.strip().endswith("omp=2")

    # again: nothing is trained, the merge and the card are made again
    (tmp_path / "logs" / "train.argv").unlink()
    (tmp_path / "assets/MODEL_CARD.md").unlink()
    again = _run_make(tmp_path, makefile="default_model.mk")
    assert again.returncode == 0, again.stderr
    assert _train_calls(tmp_path) == []
    assert (tmp_path / "assets/MODEL_CARD.md").exists()


def test_default_model_keeps_the_fsdd_specialist_that_make_results_trained(tmp_path: Path) -> None:
    _fake_bin(tmp_path)
    shared = tmp_path / "runs/fsdd/audio/model.safetensors"
    shared.parent.mkdir(parents=True)
    shared.write_text("from make results")
    done = _run_make(tmp_path, makefile="default_model.mk")
    assert done.returncode == 0, done.stderr
    outs = [call[call.index("--out") + 1] for call in _train_calls(tmp_path)]
    assert str(shared.parent) not in outs and len(outs) == 5  # imu, video, pose, utd, audio entry
    assert shared.read_text() == "from make results"


def test_default_model_stops_at_a_failed_run_and_keeps_the_shipped_model(tmp_path: Path) -> None:
    _fake_bin(tmp_path)
    shipped = tmp_path / "assets/default.safetensors"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("shipped")
    done = _run_make(tmp_path, makefile="default_model.mk", env={"FAIL_RECIPE": "default_utd"})
    assert done.returncode != 0 and "failing on purpose" in done.stderr
    assert shipped.read_text() == "shipped"
    assert not (tmp_path / "runs/default/audio/model.safetensors").exists()
