"""Evaluation: few-shot episodes and CI, accuracy/fewshot CLIs print the documented JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmg_live.checkpoint import save_checkpoint
from mmg_live.models.mmg import build_model
from trainer.data.utd_mhad import ACTIONS
from trainer.evaluate import embeddings, embeddings_subsets, few_shot, modality_subsets, predict, predict_subsets
from trainer.windows import WindowSet


def test_few_shot_on_separable_and_random_embeddings():
    labels = np.repeat(np.arange(8), 12).tolist()
    centres = torch.eye(8) * 10
    noise = torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(0))
    separable = centres[torch.tensor(labels)] + 0.1 * noise
    result = few_shot(separable, separable, labels, episodes=100)
    assert result.acc == 1.0 and result.ci95 == 0.0 and result.episodes == 100
    noise = torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(1))
    chance = few_shot(noise, torch.randn(len(labels), 8), labels, episodes=300)
    assert 0.12 < chance.acc < 0.28 and 0 < chance.ci95 < 0.05  # 5-way chance is 0.2
    # Cross-modal: support from one "modality", queries from a shifted copy of the same classes.
    shifted = separable + 0.5
    assert few_shot(separable, shifted, labels, episodes=50).acc == 1.0


def test_modality_subsets():
    assert modality_subsets(["video", "imu"]) == [["video"], ["imu"], ["video", "imu"]]
    assert len(modality_subsets(["video", "audio", "imu"])) == 7


def test_subsets_share_one_encoding_and_equal_separate_passes():
    torch.manual_seed(0)
    model = build_model("lite", [f"c{i}" for i in range(4)]).eval()
    specs, n = model.config.specs, 6
    gen = torch.Generator().manual_seed(1)
    data = WindowSet(
        tensors={m: torch.randn((n, 1, *specs[m].output_shape()), generator=gen).half() for m in ("video", "imu")},
        present={m: torch.ones(n, dtype=torch.bool) for m in ("video", "imu")},
        labels=torch.arange(n) % 4, clip_ids=[str(i) for i in range(n)], groups=["s"] * n)
    video_calls = []
    model.encoders["video"].register_forward_hook(lambda *_: video_calls.append(1))
    subsets = modality_subsets(["video", "imu"])
    together = predict_subsets(model, data, subsets, batch_size=4)
    assert len(video_calls) == 2  # two batches, video encoded once for all three subsets
    for subset, probs in zip(subsets, together):
        assert probs.shape == (n, 4)
        assert torch.equal(probs, predict(model, data, subset, batch_size=4)), subset
    for subset, emb in zip(subsets, embeddings_subsets(model, data, subsets, batch_size=4)):
        assert torch.equal(emb, embeddings(model, data, subset, batch_size=4)), subset
    assert not torch.equal(together[0], together[2])
    # a clip without video: the video subset fails as a video-only pass does, naming the clip
    data.present["video"][5] = False
    with pytest.raises(ValueError, match="have no modality present"):
        predict(model, data, ["video"], batch_size=4)
    with pytest.raises(ValueError, match=r"samples \[5\] have none of video present"):
        predict_subsets(model, data, subsets, batch_size=4)
    assert torch.equal(predict_subsets(model, data, [["imu"], ["video", "imu"]], batch_size=4)[0], together[1])
    data.present["video"][4] = False  # the whole second batch without video: video is not encoded there at all
    with pytest.raises(ValueError, match=r"samples \[4, 5\] have none of video present"):
        predict_subsets(model, data, subsets, batch_size=4)


@pytest.fixture(scope="module")
def imu_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("lite", list(ACTIONS))
    model.trained.encoders, model.trained.fusion, model.trained.classifier = ["imu"], ["imu"], True
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "imu.safetensors", model)


def _eval(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "trainer.cli", *args], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_accuracy_cli_json(utd_mhad_dir, imu_checkpoint):
    result = _eval("accuracy", "--checkpoint", str(imu_checkpoint), "--dataset", "utd-mhad", "--data",
                   str(utd_mhad_dir), "--subjects", "2", "--modalities", "imu", "--json")
    assert set(result) == {"top1", "n"} and 0.0 <= result["top1"] <= 1.0
    assert result["n"] == 108  # subject 2: 27 actions x 4 trials


def test_fewshot_cli_json(utd_mhad_dir, imu_checkpoint):
    result = _eval("fewshot", "--checkpoint", str(imu_checkpoint), "--dataset", "utd-mhad", "--data",
                   str(utd_mhad_dir), "--subjects", "2,4,6", "--support", "imu", "--query", "imu",
                   "--episodes", "50", "--json")
    assert set(result) == {"acc", "ci95", "episodes"} and result["episodes"] == 50
    assert 0.2 < result["acc"] <= 1.0  # even random IMU features beat chance on real motion


def test_fewshot_cli_scores_unseen_voices_on_every_digit(fsdd_dir):
    """`--classes all` keeps the data set's own classes: FSDD's digits are not mapped onto the default
    model's action classes (which dropped every clip), so an unseen speaker can be scored."""
    result = _eval("fewshot", "--checkpoint", "default", "--dataset", "fsdd", "--data", str(fsdd_dir),
                   "--support", "audio", "--query", "audio", "--classes", "all", "--episodes", "200", "--json")
    assert result["episodes"] == 200
    # measured 81.6 % (nicolas, 10 digits); the model card gives 80.8 % on the novel digits alone
    assert result["acc"] >= 0.7, result


def test_missing_checkpoint_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trainer.cli", "accuracy", "--checkpoint", str(tmp_path / "x"),
                             "--dataset", "utd-mhad", "--data", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not found" in result.stderr


def test_one_modality_is_evaluated_on_the_same_window_as_in_the_table(utd_mhad_dir):
    """The evaluated window ends at the clip's last sample over ALL its streams, whichever
    modality is asked for: `accuracy --modalities video` and the table's video column agree."""
    from trainer.evaluate import load_eval_set

    torch.manual_seed(0)
    model = build_model("lite", list(ACTIONS))
    alone = load_eval_set(model, "utd-mhad", utd_mhad_dir, ["2"], ["video"])
    both = load_eval_set(model, "utd-mhad", utd_mhad_dir, ["2"], ["video", "imu"])
    assert set(alone.tensors) == {"video"} and alone.clip_ids == both.clip_ids
    torch.testing.assert_close(alone.tensors["video"], both.tensors["video"], rtol=0, atol=0)


def test_accuracy_cli_caches_clips_and_gives_the_same_answer(utd_mhad_dir, imu_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MMG_CACHE", str(tmp_path / "cache"))
    args = ("accuracy", "--checkpoint", str(imu_checkpoint), "--dataset", "utd-mhad", "--data", str(utd_mhad_dir),
            "--subjects", "2", "--modalities", "imu", "--json")
    first = _eval(*args)
    entries = sorted(p.name for p in (tmp_path / "cache").rglob("*.npz"))
    assert len(entries) == 2 * 108  # a decoded clip and its preprocessed window per trial
    assert _eval(*args) == first
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.npz")) == entries  # all hits, nothing new
    assert _eval(*args, "--no-cache") == first
