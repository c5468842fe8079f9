"""Data-parallel training with DistributedDataParallel: ``torchrun --nproc_per_node 2`` on CPU
(gloo) matches one process on the same global batch, alignment negatives gathered from both ranks
(the worker is ``tests/ddp_parity_worker.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from mmg_live.models.mmg import MMGModel
from mmg_live.models.registry import get_config

WORKER = Path(__file__).with_name("ddp_parity_worker.py")
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_torchrun_two_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    _run([sys.executable, str(WORKER), str(tmp_path)])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), str(WORKER), str(tmp_path)])
    one, two = load_file(str(tmp_path / "world1.safetensors")), load_file(str(tmp_path / "world2.safetensors"))
    losses_one, losses_two = one.pop("losses"), two.pop("losses")
    print(f"\nloss per step, one process {losses_one.tolist()}, two ranks {losses_two.tolist()}; "
          f"max |weight difference| {max(float((one[k] - two[k]).abs().max()) for k in one):.1e}")
    assert len(losses_one) == 3
    torch.testing.assert_close(losses_two, losses_one, atol=1e-5, rtol=1e-5)
    for name, weight in one.items():
        torch.testing.assert_close(two[name], weight, atol=1e-5, rtol=1e-4, msg=name)
    # the steps moved the weights that train (SGD: the step is the averaged gradient itself)
    sys.path.insert(0, str(WORKER.parent))
    from ddp_parity_worker import CLASSES, without_dropout

    torch.manual_seed(0)
    start = MMGModel(without_dropout(get_config("lite")), CLASSES).state_dict()
    moved = [k for k in one if not torch.equal(one[k], start[k])]
    assert any(k.startswith("encoders.imu.backbone") for k in moved)
    assert any(k.startswith("encoders.audio") for k in moved) and any(k.startswith("fusion.") for k in moved)
    assert not any(k.startswith("encoders.imu.patch_embed") for k in moved)  # frozen in the worker
