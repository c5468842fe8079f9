"""``mmg-eval flops --json`` prints one JSON object with the documented fields."""

from __future__ import annotations

import json
import subprocess
import sys


def test_flops_json_for_lite():
    out = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "flops", "--config", "lite", "--json", "--repeats", "2"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout.strip().splitlines()
    report = json.loads(out[-1])
    # the frozen speech embedding (ONNX) is its own row beside the trained audio projection
    assert set(report) == {"video", "audio_frontend", "audio", "imu", "pose", "fusion"}
    for part in report.values():
        assert part["params_m"] > 0 and part["gflops"] > 0 and part["cpu_ms_p50"] > 0
    assert report["video"]["gflops"] < 1.0  # lite is meant for 2 CPU cores


def test_flops_unknown_config_is_one_line_error():
    result = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "flops", "--config", "huge"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown model config 'huge'" in result.stderr
