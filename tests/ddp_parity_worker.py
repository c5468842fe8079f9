"""Three supervised SGD steps of ``trainer.stages.run_epoch`` through ``trainer.distributed`` on a
fixed synthetic window set; run alone (one process) or under ``torchrun --nproc_per_node N``.
Writes ``OUT/world<N>.safetensors``: the weights after the steps and the mean over ranks of each
step's loss (``losses``). Dropout is off (each rank would draw its own masks) and the IMU's
convolutional stem, whose BatchNorm would normalise each rank's share on its own (gloo has no
SyncBatchNorm), is frozen: its BatchNorm then runs on its running statistics. Every clip has
both modalities and none is dropped: a loss term averaged over the rows where a modality is
present is averaged per rank, then over the ranks, which equals the global mean only when the
ranks hold equally many such rows."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mmg_live.models.mmg import MMGModel
from mmg_live.models.registry import MMGConfig, get_config
from trainer.distributed import data_parallel, world_size
from trainer.stage_config import StageConfig
from trainer.stages import TrainingStep, make_optimizer, plan_epoch, run_epoch
from trainer.windows import WindowSet

CLASSES = [str(i) for i in range(4)]
CLIPS, GLOBAL_BATCH = 24, 8
STAGE = {"name": "t", "type": "supervised", "modalities": ["imu", "audio"], "epochs": 1, "lr": 0.05,
         "unimodal_weight": 0.5, "align_weight": 0.5, "modality_dropout": 0.0, "imu_noise": 0.1,
         "label_smoothing": 0.0, "freeze": ["encoders.imu.patch_embed"]}


def without_dropout(config: MMGConfig) -> MMGConfig:
    values = config.to_dict()
    for part in [*values["encoders"].values(), values["fusion"]]:
        if "dropout" in part:
            part["dropout"] = 0.0
    return MMGConfig.from_dict(values)


def window_set() -> WindowSet:
    gen = torch.Generator().manual_seed(1)
    specs = get_config("lite").specs
    tensors = {m: torch.randn(CLIPS, 2, *specs[m].output_shape(), generator=gen).half() for m in ("imu", "audio")}
    present = {m: torch.ones(CLIPS, dtype=torch.bool) for m in tensors}
    labels = torch.arange(CLIPS) % len(CLASSES)
    return WindowSet(tensors, present, labels, [f"c{i}" for i in range(CLIPS)], ["g"] * CLIPS)


def main(out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MMGModel(without_dropout(get_config("lite")), CLASSES)
    stage = StageConfig.from_dict({**STAGE, "batch_size": GLOBAL_BATCH // world})
    data = window_set()
    # SGD, not the recipes' AdamW: Adam's step hardly depends on the gradient's scale, so a wrong
    # average would barely show in the weights; SGD's step is the gradient (make_optimizer freezes)
    trainable = [p for group in make_optimizer(model, stage).param_groups for p in group["params"]]
    optimizer = torch.optim.SGD(trainable, lr=stage.lr)
    step_module = data_parallel(TrainingStep(model, rank, world), torch.device("cpu"))
    plan = plan_epoch(stage, data, seed=5, rank=rank, world=world)
    losses: list[float] = []
    run_epoch(model, stage, data, plan, optimizer, 0, len(plan.batches), len(plan.batches), seed=5,
              device=torch.device("cpu"), progress=lambda stats: losses.append(stats["loss"]),
              step_module=step_module)
    mean_losses = torch.tensor(losses, dtype=torch.float64)
    if world_size() > 1:
        dist.all_reduce(mean_losses)
        mean_losses /= world
    if rank == 0:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file({**state, "losses": mean_losses}, str(Path(out) / f"world{world}.safetensors"))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
