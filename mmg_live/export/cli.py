"""``mmg-export``: a trained checkpoint in a portable form.

``mmg-export onnx --checkpoint CKPT OUT/`` writes each trained encoder and the fusion + classifier
as ONNX graphs with a dynamic batch axis and the checkpoint's header beside them
(:mod:`mmg_live.export.onnx_export`); ``mmg-live --backend onnxruntime --onnx OUT/`` runs them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmg_common import one_line

PROG = "mmg-export"


def build_parser() -> argparse.ArgumentParser:
    """The ``mmg-export`` command line."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="format", required=True)
    onnx = sub.add_parser("onnx", help="ONNX graphs for onnxruntime (mmg-live --backend onnxruntime)")
    onnx.add_argument("--checkpoint", required=True, metavar="FILE",
                      help="model checkpoint (safetensors + JSON); 'default' = the shipped model")
    onnx.add_argument("out", metavar="OUT", help="folder to write the graphs and export.json into")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a bad command line or checkpoint)."""
    args = build_parser().parse_args(argv)
    from mmg_live.checkpoint import load_checkpoint

    checkpoint = args.checkpoint
    if checkpoint == "default":
        from mmg_live.assets import default_checkpoint_path

        checkpoint = str(default_checkpoint_path())
    try:
        model, _info = load_checkpoint(checkpoint, "cpu")
    except (ValueError, OSError) as exc:
        print(f"{PROG}: {one_line(exc)}", file=sys.stderr)
        return 2
    from mmg_live.export.onnx_export import export_onnx

    t0 = time.perf_counter()
    try:
        manifest = export_onnx(model, args.out)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"{PROG}: cannot export {checkpoint}: {one_line(exc)}", file=sys.stderr)
        return 1
    files = sorted(p.name for p in Path(args.out).glob("*.onnx"))
    print(f"wrote {', '.join(files)} and {manifest.name} to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
