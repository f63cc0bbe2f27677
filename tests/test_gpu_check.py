"""The GPU check script runs end to end on CPU with tiny models (``--device cpu --tiny``): every method trains, and
each line reports throughput, MFU and peak memory; PPO its generation share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_every_method_on_cpu_with_tiny_models(tmp_path):
    out = subprocess.run(["bash", str(REPO / "experiments" / "gpu" / "check.sh"), "--device", "cpu", "--tiny",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = {r["method"]: r for r in json.loads((tmp_path / "gpu_check.json").read_text())}
    assert set(results) == {"mlm", "reward", "sft", "pwp", "dpo", "kto", "ppo"}
    for method, r in results.items():
        assert "error" not in r, (method, r.get("error"))
        assert 0 < r["mfu"] < 1 and r["peak_memory_gb"] > 0.1, (method, r)
        assert r["tokens_per_sec" if method != "ppo" else "episodes_per_sec"] > 0, (method, r)
    assert 0 < results["ppo"]["generation_share"] < 1
    assert "ppo" in out.stdout and "episodes/s, generation" in out.stdout and "MFU" in out.stdout
