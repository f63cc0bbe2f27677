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
    assert set(results) == {"mlm", "reward", "sft", "pwp", "dpo", "kto", "ppo", "ppo+compile"}
    for method, r in results.items():
        assert "error" not in r, (method, r.get("error"))
        assert 0 < r["mfu"] < 1 and r["peak_memory_gb"] > 0.1, (method, r)
        assert r["episodes_per_sec" if method.startswith("ppo") else "tokens_per_sec"] > 0, (method, r)
    assert 0 < results["ppo"]["generation_share"] < 1
    assert "ppo" in out.stdout and "episodes/s, generation" in out.stdout and "MFU" in out.stdout


def _check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "experiments" / "gpu" / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_export_that_lacks_a_weight_is_reported_as_not_whole(tmp_path):
    """What the DeepSpeed runs of the check verify of each export (under ZeRO-3: that the weights were gathered)."""
    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    export_loads_whole = _check_module().export_loads_whole
    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=32)).save_pretrained(tmp_path)
    assert export_loads_whole(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["transformer.h.0.mlp.c_fc.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert not export_loads_whole(tmp_path)


def test_the_deepspeed_check_says_what_it_needs(tmp_path):
    run = [sys.executable, str(REPO / "experiments" / "gpu" / "check.py"), "--out", str(tmp_path)]
    out = subprocess.run([*run, "--device", "cpu", "--tiny", "--strategy", "deepspeed"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "Lightning runs DeepSpeed on CUDA devices only" in out.stderr
