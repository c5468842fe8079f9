"""Mean fusion latency (p50/p95): centred and mapped (``"centre": true``, the few-shot model)
against plain mean fusion as the baseline in the same run, on precomputed embeddings.

Measures only ``MMGModel.fuse`` (what centring adds to every prediction and prototype), at
batch 1 (the live engine) and batch 64 (evaluation). Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os

import torch


def main() -> None:
    from mmg_live.models.mmg import Encoded, build_model
    from mmg_live.models.profile import latency_ms, percentiles_ms
    from mmg_live.models.registry import get_config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("MMG_BENCH_REPEATS", 2000)))
    args = parser.parse_args()
    models = {}
    for name, fusion in (("plain", {"kind": "mean"}), ("centred", {"kind": "mean", "centre": True})):
        config = get_config("lite")
        config.fusion = fusion
        torch.manual_seed(0)
        models[name] = build_model(config, ["a", "b"]).eval()
    d = models["centred"].config.embed_dim
    gen = torch.Generator().manual_seed(0)
    turn, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    centres = {m: 0.1 * torch.randn(d, generator=gen) for m in models["centred"].modalities}
    models["centred"].set_modality_centres(centres, {"video": turn})
    results: dict = {"threads": torch.get_num_threads()}
    print(f"{'fusion':<10} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9}")
    for batch in (1, 64):
        enc = Encoded()
        for m in ("video", "imu"):
            enc.embeddings[m] = torch.randn(batch, d, generator=gen)
            enc.present[m] = torch.ones(batch, dtype=torch.bool)
        for name, model in models.items():
            with torch.inference_mode():
                times = latency_ms(lambda model=model, enc=enc: model.fuse(enc), args.repeats, warmup=10)
                stats = percentiles_ms(times, digits=4)
            results[f"{name}_batch{batch}"] = stats
            print(f"{name:<10} {batch:>5} {stats['p50_ms']:>9.4f} {stats['p95_ms']:>9.4f}")
        extra = results[f"centred_batch{batch}"]["p50_ms"] - results[f"plain_batch{batch}"]["p50_ms"]
        results[f"centring_adds_p50_ms_batch{batch}"] = round(extra, 4)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
