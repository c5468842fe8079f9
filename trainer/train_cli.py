"""``mmg-train RECIPE --dataset NAME --data DIR --out DIR [--set key=value ...]``.

Multi-process (CPU or GPU) through torchrun, e.g.
``torchrun --nproc_per_node 2 -m trainer.train_cli RECIPE ...``: every rank trains on its share
of each global batch in DistributedDataParallel (:mod:`trainer.distributed`; gloo on CPU, NCCL
on GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from trainer.datasets import dataset_names


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmg-train", description="Train an MMG model from a recipe.")
    parser.add_argument("recipe", help="recipe name (trainer/recipes/NAME.json) or path to a JSON recipe")
    parser.add_argument("--dataset", required=True, choices=dataset_names())
    parser.add_argument("--data", required=True, type=Path, help="dataset root folder (or manifest file)")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, logs); resumes if present")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. stages.0.epochs=3 or stages.*.lr=5e-4 (repeatable)")
    parser.add_argument("--pretrained", action="append", default=[], metavar="NAME",
                        help="start an encoder from a publisher's pretrained weights (repeatable): "
                             "mvit_b_16x4_k400 (paper video), ast_audioset (paper audio); see docs/training.md")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="stop after N epochs in this invocation; the same command resumes")
    parser.add_argument("--eval-every", type=_non_negative_int, default=1, metavar="N",
                        help="log the held-out top-1 every N epochs of a supervised stage (0: only after its "
                             "last epoch; the evaluation is a quarter of a video epoch's time on CPU)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from mmg_live.models.mmg import select_device
    from trainer.pretrained import fetch as fetch_pretrained
    from trainer.recipe import load_recipe
    from trainer.run import RunContext, train

    if args.quiet:
        os.environ["MMG_NO_PROGRESS"] = "1"
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        recipe = load_recipe(args.recipe, args.set)
        recipe.pretrained = list(dict.fromkeys([*recipe.pretrained, *args.pretrained]))
        for name in recipe.pretrained:  # before any data is read: a missing file fails at once
            fetch_pretrained(name)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mmg-train: error: {exc}", file=sys.stderr)
        return 2
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = select_device(args.device)
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
    ctx = RunContext(recipe, args.dataset, args.data, args.out, device, rank, world, args.max_epochs,
                     eval_every=args.eval_every)
    try:
        final = train(ctx)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mmg-train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        print(json.dumps({"checkpoint": str(final)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
