"""``mmg-train`` and ``mmg-eval`` command lines."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from mmg_common import one_line


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
    note = None
    if "audio" in model.modalities and config.specs.audio.frontend == "speech_embedding":
        report["audio_frontend"] = _speech_frontend_cost(args.repeats, measure_latency=not args.no_latency)
        note = ("audio_frontend: the frozen ONNX speech embedding run in preprocessing (onnxruntime, one thread), "
                "which fvcore cannot see. Params: its graph's initializers; GFLOPs: its Conv/Gemm/MatMul "
                "multiply-adds from the graph's node shapes (element-wise ops not counted); CPU ms: its log "
                "filterbank + the ONNX run")
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(args.config, report))
        if note:
            print(note)
    return 0


def _speech_frontend_cost(repeats: int, measure_latency: bool) -> dict:
    """``mmg-eval flops`` entry of the speech embedding front end (:func:`mmg_live.speech_embedding.model_cost`)."""
    import numpy as np

    from mmg_live import speech_embedding
    from mmg_live.models.profile import latency_ms, percentiles_ms

    cost = speech_embedding.model_cost()
    entry = {"params_m": round(cost["params"] / 1e6, 3), "gflops": round(cost["macs"] / 1e9, 3),
             "counted_by": "onnx graph: Conv/Gemm/MatMul multiply-adds"}
    if measure_latency:
        wave = np.zeros(speech_embedding.NUM_SAMPLES, np.float32)  # timed: its log filterbank + the ONNX run
        p = percentiles_ms(latency_ms(lambda: speech_embedding.embed_waveform(wave), repeats=repeats))
        entry.update({"cpu_ms_p50": p["p50_ms"], "cpu_ms_p95": p["p95_ms"]})
    return entry


def _list(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def _checkpoint_path(text: str):
    from pathlib import Path

    if text == "default":
        from mmg_live.assets import default_checkpoint_path

        return default_checkpoint_path()
    return Path(text)


def _cache(args: argparse.Namespace):
    """The decoded-clip cache (``$MMG_CACHE``), or None with ``--no-cache``."""
    from trainer.data.cache import Cache

    return None if args.no_cache else Cache()


def _groups(args: argparse.Namespace) -> list[str] | None:
    return _list(getattr(args, "subjects", None)) or _list(getattr(args, "speakers", None))


def _accuracy(args: argparse.Namespace) -> int:
    from mmg_live.checkpoint import load_checkpoint
    from trainer.evaluate import accuracy, load_eval_set

    model, _ = load_checkpoint(_checkpoint_path(args.checkpoint), device=args.device)
    if args.classifier:
        model.config.classifier = args.classifier
    mods = _list(args.modalities) or model.trained.classifier_inputs() or list(model.modalities)
    data = load_eval_set(model, args.dataset, args.data, _groups(args), mods, cache=_cache(args))
    result = accuracy(model, data, mods)
    print(json.dumps(result) if args.json else f"top-1 {result['top1']:.4f} on {result['n']} clips ({'+'.join(mods)})")
    return 0


def _fewshot(args: argparse.Namespace) -> int:
    from mmg_live.checkpoint import load_checkpoint
    from trainer.datasets import class_count, class_subset
    from trainer.evaluate import embeddings, few_shot, load_eval_set

    model, info = load_checkpoint(_checkpoint_path(args.checkpoint), device=args.device)
    support, query = _list(args.support), _list(args.query)
    mods = sorted(set(support) | set(query))
    # few-shot classes are the data set's own (original labels), never mapped onto the model's
    classes = class_subset(args.classes, args.dataset, class_count(args.dataset, args.data))
    data = load_eval_set(model, args.dataset, args.data, _groups(args), mods, classes=classes,
                         cache=_cache(args)).having(mods)
    result = few_shot(embeddings(model, data, support), embeddings(model, data, query), data.labels.tolist(),
                      way=args.way, shot=args.shot, query=args.queries, episodes=args.episodes, seed=args.seed)
    print(json.dumps(result.to_dict()) if args.json else
          f"{args.way}-way {args.shot}-shot {'+'.join(support)} -> {'+'.join(query)}: "
          f"{result.acc:.4f} ± {result.ci95:.4f} over {result.episodes} episodes")
    return 0


def _table(args: argparse.Namespace) -> int:
    from trainer.tables import make_tables

    make_tables([_checkpoint_path(c) for c in args.checkpoint], args.dataset, args.data, args.out,
                groups=_groups(args), episodes=args.episodes, device=args.device, cache=_cache(args))
    return 0


def build_eval_parser() -> argparse.ArgumentParser:
    from trainer.datasets import dataset_names

    parser = argparse.ArgumentParser(prog="mmg-eval", description="Evaluate and profile MMG models.")
    sub = parser.add_subparsers(dest="command", required=True)
    flops = sub.add_parser("flops", help="params, GFLOPs (fvcore) and CPU latency per encoder and the fusion")
    flops.add_argument("--config", default="lite", help="model config name (lite, paper)")
    flops.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    flops.add_argument("--repeats", type=int, default=10, help="timed forward passes per part")
    flops.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    flops.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    flops.set_defaults(func=_flops)

    def data_args(p: argparse.ArgumentParser) -> None:
        from pathlib import Path

        p.add_argument("--checkpoint", required=True, help="checkpoint file, or 'default' for the shipped one")
        p.add_argument("--dataset", required=True, choices=dataset_names())
        p.add_argument("--data", required=True, type=Path)
        group = p.add_mutually_exclusive_group()
        group.add_argument("--subjects", help="comma-separated subjects to test on (default: the dataset's test split)")
        group.add_argument("--speakers", help="comma-separated speakers to test on (FSDD)")
        p.add_argument("--device", default="auto")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        no_cache_arg(p)

    def no_cache_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-cache", action="store_true",
                       help="decode the data again instead of using the clip cache ($MMG_CACHE)")

    acc = sub.add_parser("accuracy", help='top-1 of the classifier: {"top1", "n"}')
    data_args(acc)
    acc.add_argument("--modalities", help="comma-separated test modalities (default: what the classifier reads)")
    acc.add_argument("--classifier", choices=("fused", "ensemble"),
                     help="base-class scoring (default: the checkpoint's); ensemble = late fusion of the fused "
                          "classifier and the unimodal heads")
    acc.set_defaults(func=_accuracy)

    few = sub.add_parser("fewshot", help='N-way K-shot prototypes: {"acc", "ci95", "episodes"}')
    data_args(few)
    few.add_argument("--support", required=True, help="modalities that embed the support set, e.g. video,imu")
    few.add_argument("--query", required=True, help="modalities that embed the queries, e.g. imu")
    few.add_argument("--way", type=int, default=5)
    few.add_argument("--shot", type=int, default=5)
    few.add_argument("--queries", type=int, default=5, help="query clips per class and episode")
    few.add_argument("--episodes", type=int, default=600)
    few.add_argument("--classes", default="novel", choices=["novel", "base", "all"])
    few.add_argument("--seed", type=int, default=0)
    few.set_defaults(func=_fewshot)

    table = sub.add_parser("table", help="the MMG tables (markdown, CSV, JSON) and a confusion matrix PNG")
    from pathlib import Path

    table.add_argument("--checkpoint", action="append", required=True,
                       help="a trained run's checkpoint (repeat); its recipe says which table rows it fills")
    table.add_argument("--dataset", required=True, choices=dataset_names())
    table.add_argument("--data", required=True, type=Path)
    table.add_argument("--subjects")
    table.add_argument("--out", type=Path, default=Path("docs/results"))
    table.add_argument("--episodes", type=int, default=600)
    table.add_argument("--device", default="auto")
    no_cache_arg(table)
    table.set_defaults(func=_table)
    return parser


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmg-eval``."""
    parser = build_eval_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"mmg-eval: error: {one_line(exc)}", file=sys.stderr)
        return 2


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmg-train``."""
    from trainer.train_cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(eval_main())
