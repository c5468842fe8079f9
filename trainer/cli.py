"""``mmg-train`` and ``mmg-eval`` command lines."""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def _flops(args: argparse.Namespace) -> int:
    from mmg_live.models.mmg import build_model
    from mmg_live.models.profile import format_table, profile_model
    from mmg_live.models.registry import get_config

    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch

    torch.set_num_threads(args.threads) if args.threads else None
    config = get_config(args.config)
    model = build_model(config, ["class"] * 2)
    report = profile_model(model, repeats=args.repeats, measure_latency=not args.no_latency)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(args.config, report))
    return 0


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmg-eval", description="Evaluate and profile MMG models.")
    sub = parser.add_subparsers(dest="command", required=True)
    flops = sub.add_parser("flops", help="params, GFLOPs (fvcore) and CPU latency per encoder and the fusion")
    flops.add_argument("--config", default="lite", help="model config name (lite, paper)")
    flops.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    flops.add_argument("--repeats", type=int, default=10, help="timed forward passes per part")
    flops.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    flops.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    flops.set_defaults(func=_flops)
    return parser


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmg-eval``."""
    parser = build_eval_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mmg-eval: error: {exc}", file=sys.stderr)
        return 2


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmg-train``."""
    from trainer.train_cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(eval_main())
