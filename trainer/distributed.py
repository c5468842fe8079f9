"""Data-parallel training with torch's own engine.

``torchrun --nproc_per_node N -m trainer.train_cli ...`` starts N ranks; each wraps the training
step in :class:`torch.nn.parallel.DistributedDataParallel` (:func:`data_parallel`), which averages
the gradients of what ran in its ``forward`` over the ranks. Modality dropout and the episodes of
meta-training leave parts of the model unused in a step, so unused parameters are looked for.
The alignment loss sees the global batch: :func:`gather_rows` collects every rank's embeddings
with their gradients (``torch.distributed.nn.functional.all_gather``).
"""

from __future__ import annotations

import torch
from torch import nn


def world_size() -> int:
    """The number of ranks of the initialised process group, 1 without one."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` ``[b, ...]`` stacked in rank order ``[world·b, ...]``; the gradient of
    each rank's rows flows back to that rank. ``x`` itself with one rank."""
    if world_size() == 1:
        return x
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # its successor lives in a private module (_functional_collectives)
        warnings.simplefilter("ignore", FutureWarning)
        if x.dtype == torch.bool:  # gloo gathers no bool; masks carry no gradient
            return torch.cat(all_gather(x.to(torch.uint8))).bool()
        return torch.cat(all_gather(x.contiguous()))


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in :class:`DistributedDataParallel` when a process group of more than one rank
    is initialised (parameters broadcast from rank 0 now, gradients averaged in each backward),
    else ``module`` itself. Make it after the stage's freezing: DDP syncs what requires grad now.

    On CUDA, BatchNorm layers become :class:`torch.nn.SyncBatchNorm` (statistics of the global
    batch); gloo has no such layer, so on CPU each rank normalises its own share.
    """
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    # device_ids=None: inputs are index tensors into the CPU-held window set; DDP must not move them
    return DistributedDataParallel(module, device_ids=None, find_unused_parameters=True)
