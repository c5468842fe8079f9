"""The seed's pretrained starting points (trainer.pretrained), on checkpoints written here in the
publishers' exact key layouts and shapes: pytorchvideo's MViT-B 16×4 (``{"model_state": ...}`` of
``mvit_base_16x4`` with its 400-class head) and AST's AudioSet model (``DataParallel(ASTModel)``:
a DeiT-B with class and distillation tokens over a 12 × 101 patch grid, and its 527-class head)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmg_live.models.mmg import build_model
from trainer import pretrained
from trainer.pretrained import PRETRAINED, PretrainedUnavailable, init_from_pretrained

REPO = Path(__file__).resolve().parent.parent
DIM, DEPTH, HEADS = 768, 12, 12


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return build_model("paper", ["a", "b"])


def ast_audioset_state(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors in the AudioSet AST checkpoint's layout (audioset_10_10_0.4593.pth)."""
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.02

    state = {"module.v.cls_token": r(1, 1, DIM), "module.v.dist_token": r(1, 1, DIM),
             "module.v.pos_embed": r(1, 2 + 12 * 101, DIM),
             "module.v.patch_embed.proj.weight": r(DIM, 1, 16, 16), "module.v.patch_embed.proj.bias": r(DIM)}
    for i in range(DEPTH):
        b = f"module.v.blocks.{i}."
        state.update({b + "norm1.weight": 1 + r(DIM), b + "norm1.bias": r(DIM),
                      b + "attn.qkv.weight": r(3 * DIM, DIM), b + "attn.qkv.bias": r(3 * DIM),
                      b + "attn.proj.weight": r(DIM, DIM), b + "attn.proj.bias": r(DIM),
                      b + "norm2.weight": 1 + r(DIM), b + "norm2.bias": r(DIM),
                      b + "mlp.fc1.weight": r(4 * DIM, DIM), b + "mlp.fc1.bias": r(4 * DIM),
                      b + "mlp.fc2.weight": r(DIM, 4 * DIM), b + "mlp.fc2.bias": r(DIM)})
    state.update({"module.v.norm.weight": 1 + r(DIM), "module.v.norm.bias": r(DIM),
                  "module.v.head.weight": r(1000, DIM), "module.v.head.bias": r(1000),
                  "module.v.head_dist.weight": r(1000, DIM), "module.v.head_dist.bias": r(1000),
                  "module.mlp_head.0.weight": 1 + r(DIM), "module.mlp_head.0.bias": r(DIM),
                  "module.mlp_head.1.weight": r(527, DIM), "module.mlp_head.1.bias": r(527)})
    return state


def deit_blocks(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The publisher's forward over tokens ``x`` (timm's pre-norm ViT blocks, then its norm)."""
    v = {k.removeprefix("module.v."): t for k, t in state.items()}
    ln = lambda t, p: F.layer_norm(t, (DIM,), v[p + ".weight"], v[p + ".bias"], eps=1e-6)  # noqa: E731
    for i in range(DEPTH):
        b = f"blocks.{i}."
        h = ln(x, b + "norm1")
        q, k, w = F.linear(h, v[b + "attn.qkv.weight"], v[b + "attn.qkv.bias"]).chunk(3, dim=-1)
        split = lambda t: t.unflatten(-1, (HEADS, DIM // HEADS)).transpose(1, 2)  # noqa: E731
        attn = F.scaled_dot_product_attention(split(q), split(k), split(w)).transpose(1, 2).flatten(2)
        x = x + F.linear(attn, v[b + "attn.proj.weight"], v[b + "attn.proj.bias"])
        h = F.gelu(F.linear(ln(x, b + "norm2"), v[b + "mlp.fc1.weight"], v[b + "mlp.fc1.bias"]))
        x = x + F.linear(h, v[b + "mlp.fc2.weight"], v[b + "mlp.fc2.bias"])
    return ln(x, "norm")


def test_mvit_from_the_pytorchvideo_checkpoint_layout(paper_model, tmp_path):
    from pytorchvideo.models.hub.vision_transformers import mvit_base_16x4

    torch.manual_seed(1)
    published = mvit_base_16x4(pretrained=False).state_dict()  # the hub model the .pyth was saved from
    assert "head.proj.weight" in published and published["head.proj.weight"].shape == (400, 768)
    torch.save({"model_state": published}, tmp_path / PRETRAINED["mvit_b_16x4_k400"].filename)
    init_from_pretrained(paper_model, ["mvit_b_16x4_k400"], tmp_path)
    own = paper_model.encoders["video"].state_dict()
    assert len(own) == len(published) - 2  # everything but the Kinetics head
    for key, value in published.items():
        if not key.startswith("head."):
            assert torch.equal(own[f"mvit.{key}"], value), key


def test_ast_from_the_audioset_checkpoint_layout_computes_what_the_publisher_does(paper_model, tmp_path):
    state = ast_audioset_state(torch.Generator().manual_seed(2))
    torch.save(state, tmp_path / PRETRAINED["ast_audioset"].filename)
    init_from_pretrained(paper_model, ["ast_audioset"], tmp_path)
    encoder = paper_model.encoders["audio"].eval()
    rows, cols = encoder.grid
    assert (rows, cols) == (12, 64)  # the paper config's stride (10, 16) over 1024 frames × 128 mels
    own = encoder.state_dict()
    assert torch.equal(own["patch_embed.weight"], state["module.v.patch_embed.proj.weight"])
    assert torch.equal(own["backbone.cls_token"], state["module.v.cls_token"])
    assert torch.equal(own["backbone.pos_embed"][0, 0], state["module.v.pos_embed"][0, 0])
    grid = state["module.v.pos_embed"][0, 2:].reshape(12, 101, DIM)
    assert torch.equal(own["backbone.pos_embed"][0, 1:], pretrained.resample_positions(grid, rows, cols))
    # the blocks compute the publisher's function (qkv → in_proj, proj → out_proj, fc1/fc2)
    tokens = torch.randn(2, 1 + rows * cols, DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = deit_blocks(state, tokens)
        mine = encoder.backbone.norm(encoder.backbone.encoder(tokens))
    assert (mine - theirs).abs().max() < 2e-3, float((mine - theirs).abs().max())  # LayerNorm eps 1e-5 vs 1e-6


def test_positions_are_resampled_bilinearly_along_the_grid():
    ramp = torch.arange(101, dtype=torch.float32).view(1, 101, 1).expand(12, 101, 4)  # position = time index
    out = pretrained.resample_positions(ramp, 12, 64).view(12, 64, 4)
    centres = ((torch.arange(64) + 0.5) * 101 / 64 - 0.5).clamp(0, 100)  # where each new column samples
    assert torch.allclose(out[..., 0], centres.expand(12, 64), atol=1e-4)
    same = torch.randn(12, 101, 4)
    assert torch.equal(pretrained.resample_positions(same, 12, 101), same.reshape(-1, 4))


def test_missing_weights_fail_at_once_naming_the_url_and_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MMG_OFFLINE", "1")
    with pytest.raises(PretrainedUnavailable) as err:
        pretrained.fetch("mvit_b_16x4_k400", tmp_path)
    message = str(err.value)
    assert PRETRAINED["mvit_b_16x4_k400"].url in message and str(tmp_path / "MVIT_B_16x4.pyth") in message
    monkeypatch.delenv("MMG_OFFLINE")
    monkeypatch.setitem(PRETRAINED, "mvit_b_16x4_k400",
                        PRETRAINED["mvit_b_16x4_k400"].__class__("http://127.0.0.1:9/MVIT_B_16x4.pyth",
                                                                 "MVIT_B_16x4.pyth", "video", "mvit_b_16x4",
                                                                 pretrained.mvit_from_pytorchvideo))
    with pytest.raises(PretrainedUnavailable, match="download failed"):
        pretrained.fetch("mvit_b_16x4_k400", tmp_path)
    assert not (tmp_path / "MVIT_B_16x4.pyth").exists()
    # the command line: one line, exit 2, before any data is read
    env = {**os.environ, "MMG_OFFLINE": "1", "MMG_WEIGHTS": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "trainer.train_cli", "unimodal_video", "--dataset", "utd-mhad",
                           "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "run"),
                           "--pretrained", "mvit_b_16x4_k400"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "download https://dl.fbaipublicfiles.com" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


class _NotATensor:
    pass


def test_files_with_objects_are_refused_and_configs_must_fit(paper_model, tmp_path):
    path = tmp_path / PRETRAINED["mvit_b_16x4_k400"].filename
    torch.save({"model_state": {}, "cfg": _NotATensor()}, path)
    with pytest.raises(ValueError, match="weights only"):
        init_from_pretrained(paper_model, ["mvit_b_16x4_k400"], tmp_path)
    torch.save({"model_state": {"patch_embed.patch_model.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="does not fit the video encoder"):
        init_from_pretrained(paper_model, ["mvit_b_16x4_k400"], tmp_path)
    with pytest.raises(ValueError, match="use the paper config"):
        init_from_pretrained(build_model("lite", ["a", "b"]), ["mvit_b_16x4_k400"], tmp_path)
    with pytest.raises(ValueError, match="unknown pretrained"):
        init_from_pretrained(paper_model, ["resnet"], tmp_path)
