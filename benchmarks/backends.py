"""The live engine's two backends on the shipped ``lite`` default model, batch 1, in one run:
PyTorch as the engine runs it on a CPU (the baseline: ``cpu_inference_model``) against the model's
ONNX export in onnxruntime (``mmg-live --backend onnxruntime``).

Per encoder and end to end (every classifier modality encoded, then fused and scored): p50/p95 ms.
Resident memory (VmRSS after 50 end-to-end windows, in a fresh process each): the PyTorch engine
form; the onnxruntime backend (today it still imports torch, for the engine around it); and the
ONNX graphs in onnxruntime alone (numpy in, numpy out, no torch: what a torch-free runtime
holds). Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

_CHILD = r"""
import json, sys, numpy as np
backend, folder, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
manifest = json.load(open(folder + "/export.json"))
rng = np.random.default_rng(0)
inputs = {m: rng.standard_normal((1, *e["input"])).astype(np.float32) for m, e in manifest["encoders"].items()
          if m in manifest["scorer"]["modalities"]}
if backend == "onnx-only":
    import onnxruntime as ort
    opts = ort.SessionOptions(); opts.intra_op_num_threads = int(sys.argv[4]); opts.inter_op_num_threads = 1
    enc = {m: ort.InferenceSession(folder + "/" + manifest["encoders"][m]["file"], opts,
                                   providers=["CPUExecutionProvider"]) for m in inputs}
    scorer = ort.InferenceSession(folder + "/" + manifest["scorer"]["file"], opts, providers=["CPUExecutionProvider"])
    def step():
        feed = {}
        for m in manifest["scorer"]["modalities"]:
            t, p, e = enc[m].run(None, {"x": inputs[m]})
            feed.update({m + ".tokens": t, m + ".pooled": p, m + ".embedding": e, m + ".present": np.ones(1, bool)})
        return scorer.run(None, feed)[0]
else:
    import torch
    torch.set_num_threads(int(sys.argv[4]))
    from mmg_live.assets import default_checkpoint_path
    from mmg_live.checkpoint import load_checkpoint
    model, _ = load_checkpoint(default_checkpoint_path(), "cpu")
    if backend == "torch":
        from mmg_live.models.cpu_inference import cpu_inference_model
        runner = cpu_inference_model(model)
    else:
        from mmg_live.live.onnx_runner import OnnxRunner
        runner = OnnxRunner(folder, int(sys.argv[4]))
    tensors = {m: torch.from_numpy(x) for m, x in inputs.items()}
    def step():
        with torch.inference_mode():
            return runner.class_probabilities(runner.encode_batch(tensors))
for _ in range(repeats):
    step()
rss = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")][0]
print(json.dumps({"rss_mb": round(rss / 1024, 1), "torch_imported": "torch" in sys.modules}))
"""


def child_rss(backend: str, folder: str, threads: int) -> dict:
    """VmRSS of a fresh process that ran 50 end-to-end windows with ``backend``."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, backend, folder, "50", str(threads)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} child failed: {proc.stderr[-1000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import torch

    from mmg_live.assets import default_checkpoint_path
    from mmg_live.checkpoint import load_checkpoint
    from mmg_live.export.onnx_export import export_onnx
    from mmg_live.live.onnx_runner import OnnxRunner
    from mmg_live.models.cpu_inference import cpu_inference_model
    from mmg_live.models.profile import latency_ms, percentiles_ms

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("MMG_BENCH_REPEATS", 20)) * 5)
    parser.add_argument("--threads", type=int, default=1, help="threads per backend (the live default on 2 cores: 1)")
    parser.add_argument("--onnx", metavar="DIR", help="an export of the default model (default: exported now)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(default_checkpoint_path(), "cpu")
    folder = args.onnx or tempfile.mkdtemp(prefix="mmg-onnx-")
    if not args.onnx:
        export_onnx(model, folder)
    engine_form = cpu_inference_model(model)
    runner = OnnxRunner(folder, args.threads)
    scored = [m for m in model.modalities if m in model.trained.classifier_inputs()]
    torch.manual_seed(0)
    inputs = {m: torch.randn((1, *model.config.specs[m].output_shape())) for m in model.trained.encoders}
    rows: dict[str, dict] = {}
    with torch.inference_mode():
        for m, x in inputs.items():
            rows[m] = {
                "torch": percentiles_ms(latency_ms(lambda m=m, x=x: engine_form.encoders[m](x), args.repeats, 5)),
                "onnxruntime": percentiles_ms(latency_ms(lambda m=m, x=x: runner.encode_batch({m: x}),
                                                         args.repeats, 5)),
            }
        both = {m: inputs[m] for m in scored}
        rows["end to end (" + "+".join(scored) + ")"] = {
            name: percentiles_ms(latency_ms(lambda r=r: r.class_probabilities(r.encode_batch(both)), args.repeats, 5))
            for name, r in (("torch", engine_form), ("onnxruntime", runner))
        }
    print(f"batch 1, {args.threads} thread(s): p50/p95 ms, PyTorch engine form (baseline) vs onnxruntime")
    print(f"{'':34s} {'torch':>16s} {'onnxruntime':>16s} {'speedup p50':>12s}")
    for name, r in rows.items():
        r["speedup_p50"] = round(r["torch"]["p50_ms"] / r["onnxruntime"]["p50_ms"], 2)
        print(f"{name:34s} {r['torch']['p50_ms']:7.2f}/{r['torch']['p95_ms']:<8.2f} "
              f"{r['onnxruntime']['p50_ms']:7.2f}/{r['onnxruntime']['p95_ms']:<8.2f} {r['speedup_p50']:>11.2f}x")
    memory = {b: child_rss(b, folder, args.threads) for b in ("torch", "onnxruntime", "onnx-only")}
    print("resident memory after 50 windows: " + ", ".join(
        f"{b} {v['rss_mb']} MB (torch {'imported' if v['torch_imported'] else 'not imported'})"
        for b, v in memory.items()))
    print(json.dumps({"threads": args.threads, "latency": rows, "rss": memory}))


if __name__ == "__main__":
    main()
