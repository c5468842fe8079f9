"""Data-parallel training over torch.distributed (gloo, 2 CPU processes) matches one process."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmg_live.models.mmg import build_model
from trainer.stage_config import StageConfig
from trainer.stages import allreduce_gradients, shard, supervised_loss

BATCH = 8
CLASSES = [str(i) for i in range(4)]
STAGE = StageConfig(name="t", modalities=["imu", "audio"], align_weight=0.0, label_smoothing=0.0)


def _data():
    gen = torch.Generator().manual_seed(0)
    model = build_model("lite", CLASSES)
    specs = model.config.specs
    inputs = {m: torch.randn(BATCH, *specs[m].output_shape(), generator=gen) for m in ("imu", "audio")}
    present = {"imu": torch.ones(BATCH, dtype=torch.bool),
               "audio": torch.tensor([True, False] * (BATCH // 2))}
    labels = torch.randint(0, len(CLASSES), (BATCH,), generator=gen)
    return inputs, present, labels


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("lite", CLASSES).eval()  # eval: no dropout, BatchNorm on running stats: one function
    inputs, present, labels = _data()
    idx = shard(torch.arange(BATCH), rank, world)
    loss, _ = supervised_loss(model, {m: x[idx] for m, x in inputs.items()},
                              {m: p[idx] for m, p in present.items()}, labels[idx], STAGE)
    loss.backward()
    allreduce_gradients(model, world)
    if rank == 0:
        queue.put({k: v.numpy() for k, v in _grads(model).items()})
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gloo_two_processes_match_single_process_gradients():
    torch.manual_seed(0)
    model = build_model("lite", CLASSES).eval()  # eval: no dropout, BatchNorm on running stats: one function
    inputs, present, labels = _data()
    # One process, the same global batch, as the mean of the two shards' losses.
    for idx in (shard(torch.arange(BATCH), r, 2) for r in range(2)):
        loss, _ = supervised_loss(model, {m: x[idx] for m, x in inputs.items()},
                                  {m: p[idx] for m, p in present.items()}, labels[idx], STAGE)
        (loss / 2).backward()
    expected = _grads(model)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = queue.get(timeout=180)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    nonzero = 0
    for name, value in expected.items():
        torch.testing.assert_close(torch.from_numpy(got[name]), value, atol=1e-6, rtol=1e-4, msg=name)
        nonzero += int(value.abs().sum() > 0)
    assert nonzero > 20  # both encoders, fusion and heads received gradient
