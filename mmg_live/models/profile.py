"""Parameter counts, FLOPs (fvcore) and measured CPU latency per encoder and for the fusion."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from mmg_live.models.mmg import MMGModel


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fvcore_gflops(module: nn.Module, inputs: tuple) -> float:
    """GFLOPs as fvcore counts them (one fused multiply-add = one FLOP), warnings silenced."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total() / 1e9


def latency_ms(fn, repeats: int = 10, warmup: int = 2) -> list[float]:
    """Wall-clock milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def percentiles_ms(times: list[float], digits: int = 2) -> dict[str, float]:
    """``{"p50_ms", "p95_ms"}`` of millisecond timings (as :func:`latency_ms` returns them)."""
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50_ms": round(float(p50), digits), "p95_ms": round(float(p95), digits)}


class _FusionOnly(nn.Module):
    """Fusion + projection over precomputed tokens (so fvcore sees only the fusion's work)."""

    def __init__(self, model: MMGModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *tokens_and_pooled: torch.Tensor) -> torch.Tensor:
        mods = self.model.modalities
        n = len(mods)
        tokens = dict(zip(mods, tokens_and_pooled[:n]))
        pooled = dict(zip(mods, tokens_and_pooled[n:]))
        present = {m: torch.ones(t.shape[0], dtype=torch.bool) for m, t in tokens.items()}
        return self.model.fused_projection(self.model.fusion(tokens, pooled, present))


def _cpu_ms(times: list[float]) -> dict[str, float]:
    """``{"cpu_ms_p50", "cpu_ms_p95"}``: :func:`percentiles_ms` under the profile's key names."""
    p = percentiles_ms(times)
    return {"cpu_ms_p50": p["p50_ms"], "cpu_ms_p95": p["p95_ms"]}


def profile_model(model: MMGModel, repeats: int = 10, measure_latency: bool = True) -> dict[str, dict[str, Any]]:
    """``{modality|"fusion": {"params_m", "gflops", "cpu_ms_p50", "cpu_ms_p95"}}`` at batch 1 on CPU."""
    model = model.cpu().eval()
    specs = model.config.specs
    report: dict[str, dict[str, Any]] = {}
    tokens, pooled = {}, {}
    with torch.inference_mode():
        for m in model.modalities:
            x = torch.randn(1, *specs[m].output_shape())
            encoder = model.encoders[m]
            entry: dict[str, Any] = {
                "params_m": round(count_params(encoder) / 1e6, 3),
                "gflops": round(fvcore_gflops(encoder, (x,)), 3),
            }
            if measure_latency:
                times = latency_ms(lambda encoder=encoder, x=x: encoder(x), repeats=repeats)
                entry.update(_cpu_ms(times))
            tokens[m], pooled[m] = encoder(x)
            report[m] = entry
        if model.fusion is None:  # "mean" fusion: no parameters, negligible work
            report["fusion"] = {"params_m": 0.0, "gflops": 0.0, "cpu_ms_p50": 0.0, "cpu_ms_p95": 0.0}
            return report
        fusion = _FusionOnly(model)
        args = tuple(tokens[m] for m in model.modalities) + tuple(pooled[m] for m in model.modalities)
        fusion_params = count_params(model.fusion) + count_params(model.fused_projection)
        entry = {"params_m": round(fusion_params / 1e6, 3), "gflops": round(fvcore_gflops(fusion, args), 3)}
        if measure_latency:
            times = latency_ms(lambda: fusion(*args), repeats=repeats)
            entry.update(_cpu_ms(times))
        report["fusion"] = entry
    return report


def format_table(name: str, report: dict[str, dict[str, Any]]) -> str:
    """A human-readable table of :func:`profile_model` output."""
    lines = [f"config {name}", f"{'part':<8}{'params (M)':>12}{'GFLOPs':>10}{'CPU p50 ms':>12}{'CPU p95 ms':>12}"]
    for part, e in report.items():
        lines.append(f"{part:<8}{e['params_m']:>12.2f}{e['gflops']:>10.3f}"
                     f"{e.get('cpu_ms_p50', float('nan')):>12.1f}{e.get('cpu_ms_p95', float('nan')):>12.1f}")
    total = sum(e["gflops"] for e in report.values())
    lines.append(f"{'total':<8}{sum(e['params_m'] for e in report.values()):>12.2f}{total:>10.3f}")
    return "\n".join(lines)
