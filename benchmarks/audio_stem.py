"""The fbank AST audio encoder's cost (config ``lite_fbank``; ``lite`` now reads the speech
embedding): a training step (batch 32, forward + backward + AdamW, as the FSDD
run takes it) and inference latency at batch 1 (a live window), p50/p95.

The baseline in the same run is the stem the lite config had before (32-channel first stage,
3×3 conv → BatchNorm → GELU → max-pool at full resolution); ``lite_fbank`` is the config now (16
channels, a 4×4 stride-2 first stage). Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os

import torch


def main() -> None:
    from mmg_live.models.profile import count_params, latency_ms, percentiles_ms
    from mmg_live.models.registry import build_encoder, get_config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("MMG_BENCH_REPEATS", 20)))
    args = parser.parse_args()
    config = get_config("lite_fbank")  # the fbank AST (lite's own audio is the speech embedding)
    spec, lite = config.specs.audio, dict(config.encoders["audio"])
    variants = {"previous stem (baseline)": {**lite, "cnn_width": 32, "cnn_strided_first": False}, "lite_fbank": lite}
    gen = torch.Generator().manual_seed(0)
    train_batch = torch.randn((32, *spec.output_shape()), generator=gen)
    live_window = torch.randn((1, *spec.output_shape()), generator=gen)
    results: dict = {"threads": torch.get_num_threads()}
    print(f"{'audio encoder':<26} {'params':>9} {'train step p50/p95 ms':>22} {'batch 1 p50/p95 ms':>20}")
    for name, options in variants.items():
        torch.manual_seed(0)
        kind = options.pop("kind")
        encoder = build_encoder(kind, spec, **options)
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)

        def train_step(encoder: torch.nn.Module = encoder, optimizer: torch.optim.Optimizer = optimizer) -> None:
            encoder.train()
            _, pooled = encoder(train_batch)
            pooled.square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()

        train = percentiles_ms(latency_ms(train_step, args.repeats, warmup=2))
        encoder.eval()
        with torch.inference_mode():
            live = percentiles_ms(latency_ms(lambda encoder=encoder: encoder(live_window), args.repeats * 5, warmup=5))
        results[name] = {"params": count_params(encoder), "train_step": train, "batch1": live}
        print(f"{name:<26} {count_params(encoder):>9} {train['p50_ms']:>10.1f} / {train['p95_ms']:<9.1f} "
              f"{live['p50_ms']:>8.2f} / {live['p95_ms']:<8.2f}")
    base, now = results["previous stem (baseline)"], results["lite_fbank"]
    results["train_step_speedup_p50"] = round(base["train_step"]["p50_ms"] / now["train_step"]["p50_ms"], 2)
    results["batch1_speedup_p50"] = round(base["batch1"]["p50_ms"] / now["batch1"]["p50_ms"], 2)
    print(f"lite vs previous stem, p50: training step {results['train_step_speedup_p50']}x, "
          f"batch 1 {results['batch1_speedup_p50']}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
