"""Checkpoints: exact round trip, and a specific one-line error for every kind of bad file."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from mmg_live.checkpoint import CheckpointError, load_checkpoint, read_info, save_checkpoint
from mmg_live.modalities import ImuSpec
from mmg_live.models.mmg import build_model

CLASSES = ["swipe", "wave", "clap"]


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("lite", CLASSES)
    model.config.specs = model.config.specs.with_stats("imu", [0.1] * 6, [2.0] * 6)
    model.trained.encoders = ["imu", "video"]
    model.trained.fusion = ["imu", "video"]
    model.trained.classifier = True
    path = save_checkpoint(tmp_path / "m.safetensors", model, training={"recipe": "test", "epochs": 1})
    return model.eval(), path


def test_round_trip_is_exact(saved):
    model, path = saved
    loaded, info = load_checkpoint(path, device="cpu")
    assert info.class_names == CLASSES
    assert info.trained.encoders == ["imu", "video"] and info.trained.classifier
    assert info.training["recipe"] == "test"
    assert loaded.config.specs.imu == ImuSpec(rate=50.0, window_s=3.0, mean=(0.1,) * 6, std=(2.0,) * 6)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = {"imu": torch.randn(2, 6, 150)}
    with torch.inference_mode():
        torch.testing.assert_close(model(x).logits, loaded(x).logits, atol=0, rtol=0)
    assert not loaded.training


def test_file_has_no_pickle(saved):
    _, path = saved
    data = path.read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_len])
    assert "__metadata__" in header and "mmg_live" in header["__metadata__"]
    assert b"\x80\x04\x95" not in data[:64]  # pickle protocol-4 opcode never starts the file


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as exc:
        load_checkpoint(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in _one_line(exc)


def test_truncated_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors") as exc:
        load_checkpoint(cut)
    assert "truncated" in _one_line(exc) or "not a readable" in str(exc.value)


def test_flipped_weight_bytes(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(bad)


def test_garbage_file(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint file") as exc:
        load_checkpoint(bad)
    _one_line(exc)


def test_plain_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="without checkpoint metadata"):
        read_info(other)


def test_mismatched_config(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, path = saved
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["mmg_live"])
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    meta["config"]["encoders"]["imu"]["dim"] = 64
    meta.pop("weights_sha256")
    bad = tmp_path / "mismatch.safetensors"
    save_file(state, str(bad), metadata={"mmg_live": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="wrong shape") as exc:
        load_checkpoint(bad)
    _one_line(exc)


def test_future_format_version(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, path = saved
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["mmg_live"])
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    meta["format_version"] = 99
    bad = tmp_path / "future.safetensors"
    save_file(state, str(bad), metadata={"mmg_live": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(bad)
