"""`mmg-export onnx` and the engine's onnxruntime backend, on the shipped default model and real
windows: held-out UTD-MHAD trials (depth video, wrist IMU, pose estimated from the depth frames)
and FSDD speech, through the shared preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmg_live.assets import default_checkpoint_path
from mmg_live.checkpoint import load_checkpoint
from mmg_live.export.cli import main as export_main
from mmg_live.live.onnx_runner import OnnxExportError, OnnxRunner, runner_for
from mmg_live.prototypes import nonempty_subsets
from trainer.data.fsdd import list_recordings, load_recording
from trainer.data.splits import UTD_TEST_SUBJECTS
from trainer.data.utd_mhad import list_trials, load_trial
from trainer.data.utd_pose import TrialPoseReader
from trainer.windows import clip_end, clip_tensors

TOLERANCE = 1e-4  # the bar: ONNX outputs equal PyTorch's within this


@pytest.fixture(scope="module")
def default_model():
    model, _ = load_checkpoint(default_checkpoint_path(), device="cpu")
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "default"
    assert export_main(["onnx", "--checkpoint", "default", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def real_windows(default_model, utd_mhad_dir, fsdd_dir) -> dict[str, torch.Tensor]:
    """Windows of 4 held-out trials (two window ends each) and 8 FSDD digits, as model inputs."""
    specs = default_model.config.specs
    poses = TrialPoseReader(None)
    refs = [r for r in list_trials(utd_mhad_dir, subjects=UTD_TEST_SUBJECTS, actions=(1, 9, 22, 26)) if r.trial == 1]
    batches: dict[str, list[torch.Tensor]] = {"video": [], "imu": [], "pose": [], "audio": []}
    for ref in refs[:4]:
        clip = load_trial(ref)
        clip.streams["pose"] = poses.stream(ref)
        end = clip_end(clip)
        for t_end in (end - 0.5, end):
            for m, x in clip_tensors(clip, specs, ("video", "imu", "pose"), t_end).items():
                batches[m].append(x)
    for rec in list_recordings(fsdd_dir)[::150][:8]:
        clip = load_recording(rec)
        batches["audio"].append(clip_tensors(clip, specs, ("audio",), clip_end(clip))["audio"])
    return {m: torch.stack(xs) for m, xs in batches.items()}


def test_export_writes_one_graph_per_trained_encoder_and_the_scorer(exported, default_model):
    manifest = json.loads((exported / "export.json").read_text())
    assert sorted(manifest["encoders"]) == sorted(default_model.trained.encoders)
    assert manifest["scorer"]["modalities"] == [m for m in default_model.modalities
                                                if m in default_model.trained.classifier_inputs()]
    assert manifest["class_names"] == default_model.class_names
    for info in [*manifest["encoders"].values(), manifest["scorer"]]:
        assert (exported / info["file"]).stat().st_size > 100_000


def test_onnxruntime_equals_pytorch_on_real_windows_for_every_modality_subset(exported, default_model, real_windows):
    runner = OnnxRunner(exported)
    with torch.inference_mode():
        reference = default_model.encode_batch(real_windows)
    encoded = runner.encode_batch(real_windows)
    worst = {}
    for m in real_windows:
        for part in ("tokens", "pooled", "embeddings"):
            ours, theirs = getattr(encoded, part)[m], getattr(reference, part)[m]
            assert ours.shape == theirs.shape
            worst[f"{m}.{part}"] = float((ours - theirs).abs().max())
    scored = [m for m in default_model.modalities if m in default_model.trained.classifier_inputs()]
    video_rows = {m: x[:8] for m, x in real_windows.items() if m != "audio"}  # the trials' windows
    with torch.inference_mode():
        reference = default_model.encode_batch(video_rows)
    encoded = runner.encode_batch(video_rows)
    for subset in nonempty_subsets(scored):
        with torch.inference_mode():
            theirs = default_model.class_probabilities(reference, list(subset))
        ours = runner.class_probabilities(encoded, list(subset))
        worst["probabilities " + "+".join(subset)] = float((ours - theirs).abs().max())
        assert torch.equal(ours.argmax(1), theirs.argmax(1))
    print("\nmax |ONNX - PyTorch|: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    assert max(worst.values()) < TOLERANCE, worst


def test_engine_runs_the_export_and_refuses_another_models(exported, default_model, tmp_path):
    from mmg_live.live.buffer import Synchronizer
    from mmg_live.live.engine import InferenceEngine

    engine = InferenceEngine(default_model, Synchronizer({}), {}, device="cpu", backend="onnxruntime",
                             onnx_dir=str(exported))
    assert engine.backend == "onnxruntime" and engine.warm_up() > 0
    with pytest.raises(ValueError, match="backend must be one of"):
        InferenceEngine(default_model, Synchronizer({}), {}, device="cpu", backend="tflite")
    other = load_checkpoint(default_checkpoint_path(), device="cpu")[0]
    with torch.no_grad():
        other.classifier.weight.add_(0.01)
    with pytest.raises(OnnxExportError, match="exported from other weights"):
        runner_for(other, exported)
    with pytest.raises(OnnxExportError, match="no export.json"):
        OnnxRunner(tmp_path)
    (tmp_path / "export.json").write_text("{not json")
    with pytest.raises(OnnxExportError, match="unreadable"):
        OnnxRunner(tmp_path)


def test_export_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert export_main(["onnx", "--checkpoint", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmg-export: ") and str(bad) in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_headless_demo_with_the_onnxruntime_backend(exported, utd_mhad_dir, tmp_path):
    """`mmg-live --demo --headless --backend onnxruntime --onnx DIR`: predictions as JSON lines,
    the same labels the model knows."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "MMG_DATA": str(utd_mhad_dir.parent)}
    proc = subprocess.run([sys.executable, "-m", "mmg_live.cli", "--demo", "--headless", "--seconds", "10",
                           "--backend", "onnxruntime", "--onnx", str(exported)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preds = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(preds) >= 10, proc.stdout[-2000:]
    names = json.loads((exported / "export.json").read_text())["class_names"]
    assert all(p["top"][0]["label"] in names + ["unknown"] for p in preds)
    assert any("imu" in p["modalities"] for p in preds)
    bad = subprocess.run([sys.executable, "-m", "mmg_live.cli", "--headless", "--onnx", str(exported)],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--onnx needs --backend onnxruntime" in bad.stderr
