"""What the benchmarks against TRL share: the tiny GPT-2 both sides train, our run read back from its CSV log, a
TRL worker timed over the same steady logging windows, and the interleaved loop that prints the ratio."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MODEL = dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512)
LOG_EVERY = 10

# the policy both sides train: rlhf-train's own random init of the tiny GPT-2 and the BPE 4,096 it trains on the
# benchmark's data, exported once by a run of 0 steps (initial_policy), so both sides start from the same weights
OURS_MODEL = ["model.arch=gpt2", "model.tokenizer.algorithm=bpe", "model.tokenizer.vocab_size=4096",
              *(f"model.{k}={v}" for k, v in MODEL.items()), "model.dropout=0.0", "model.attention_dropout=0.0"]
# our side of every benchmark: no checkpoints, validation, export or progress bar
OURS_COMMON = [
    f"trainer.log_every_n_steps={LOG_EVERY}", "trainer.limit_val_batches=0", "trainer.enable_checkpointing=false",
    "trainer.enable_model_summary=false", "export=false", "logger=csv", "callbacks.progress_bar=null",
    "callbacks.lr_monitor=null", "method.min_lr_ratio=0",
]

# prepended to each TRL worker: the model built from the same config and tokenizer, and a callback that marks the
# end of every logging window (the first window, with start-up, is left out as on our side)
TRL_PRELUDE = r'''
import json, sys, time, os
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
args_in = json.loads(sys.argv[1])
torch.manual_seed(args_in["seed"])
tok = AutoTokenizer.from_pretrained(args_in["init"])
model = AutoModelForCausalLM.from_pretrained(args_in["init"])  # the same initial weights as our side
def rows(split):
    return [json.loads(l) for l in open(f"{args_in['data']}/{args_in['prefix']}_{split}.jsonl")]

class Window(TrainerCallback):
    def __init__(self):
        self.marks = []
    def on_step_end(self, args, state, control, **kw):
        if state.global_step % args_in["log_every"] == 0:
            self.marks.append(time.perf_counter())
window = Window()
common = dict(max_steps=args_in["steps"], learning_rate=args_in["lr"], weight_decay=0.01,
              warmup_steps=args_in["warmup"], lr_scheduler_type="linear", max_grad_norm=1.0,
              logging_steps=args_in["log_every"], save_strategy="no", eval_strategy="no", report_to=[],
              disable_tqdm=True, use_cpu=True, dataloader_drop_last=True, seed=args_in["seed"], bf16=False,
              dataloader_num_workers=0)
def steady_rate(per_step):
    spans = [b - a for a, b in zip(window.marks, window.marks[1:])]
    return args_in["log_every"] * per_step * len(spans) / sum(spans)
'''


def initial_policy(workdir: Path, overrides: list[str]) -> Path:
    """The policy both sides start from: an ``rlhf-train`` run of 0 steps (``overrides``: the method and data) that
    builds the tiny GPT-2 from its config, trains the BPE on the data and exports both. Returns the export."""
    run_dir = workdir / "init"
    subprocess.run(["rlhf-train", *OURS_MODEL, *OURS_COMMON, *overrides, "trainer.max_steps=0", "test=false",
                    "export=true", f"hydra.run.dir={run_dir}", f"paths.root_dir={workdir}"],
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run_dir / "export"


def run_ours(overrides: list[str], workdir: Path, init: Path, seed: int, column: str, per_row: float
             ) -> tuple[dict, dict]:
    """One ``rlhf-train`` run from ``init``; its rate: the harmonic mean of ``column`` over the logging windows after
    the first, times ``per_row``. Returns (rate and wall time, metrics.json)."""
    run_dir = workdir / f"ours-{time.time_ns()}"
    started = time.perf_counter()
    subprocess.run(["rlhf-train", "model=pretrained", f"model.name_or_path={init}", *OURS_COMMON, *overrides,
                    f"seed={seed}", f"hydra.run.dir={run_dir}", f"paths.root_dir={workdir}"],
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as handle:
        rates = [float(r[column]) * per_row for r in csv.DictReader(handle) if r.get(column)]
    steady = rates[1:]
    return ({"rate": len(steady) / sum(1 / r for r in steady), "wall_s": wall},
            json.loads((run_dir / "metrics.json").read_text()))


def run_trl(worker: str, workdir: Path, **settings) -> dict:
    """A TRL worker (``TRL_PRELUDE`` + ``worker``) in its own process; it writes its result to ``settings['out']``."""
    out = workdir / f"trl-{time.time_ns()}.json"
    started = time.perf_counter()
    payload = json.dumps({**settings, "out": str(out), "log_every": LOG_EVERY})  # (the model: settings["init"])
    done = subprocess.run([sys.executable, "-c", TRL_PRELUDE + worker, payload], cwd=workdir, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode:
        raise SystemExit(f"the TRL worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def interleave(repeats: int, ours: Callable[[int], dict], trl: Callable[[int], dict], unit: str, quality: str
               ) -> dict[str, list[dict]]:
    """ours, TRL, ours, TRL, ...: repeat i runs both sides with seed i (the data order; the initial weights are
    shared); each result has ``rate`` (``unit``/s) and ``quality`` (a held-out measure)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict[str, list[dict]] = {"rlhf-train": [], "trl": []}
    for i in range(repeats):
        results["rlhf-train"].append(ours(i + 1))
        results["trl"].append(trl(i + 1))
        for name in results:
            r = results[name][-1]
            print(f"[{i + 1}/{repeats}] {name:<10} {r['rate']:9.1f} {unit}/s  {quality} {r[quality]:.3f}  "
                  f"(wall {r['wall_s']:.1f} s incl. start-up)", flush=True)
    return results


def report(results: dict[str, list[dict]], unit: str, quality: str, goal: float) -> float:
    med = {n: statistics.median(r["rate"] for r in rs) for n, rs in results.items()}
    q = {n: statistics.mean(r[quality] for r in rs) for n, rs in results.items()}
    for name in results:
        runs = ", ".join(f"{r['rate']:.1f}" for r in results[name])
        qualities = ", ".join(f"{r[quality]:.3f}" for r in results[name])
        print(f"{name:<10}: {med[name]:9.1f} {unit}/s (median of {runs}), mean {quality} {q[name]:.3f} "
              f"(seeds: {qualities})")
    ratio = med["rlhf-train"] / med["trl"]
    print(f"throughput ratio rlhf/trl = {ratio:.2f} (goal >= {goal}: {'met' if ratio >= goal else 'NOT met'}); "
          f"{quality} difference {q['rlhf-train'] - q['trl']:+.3f}")
    return ratio


def require_trl() -> None:
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit("TRL is not installed: pip install -e '.[bench]'") from None


def bench_args(doc: str) -> argparse.Namespace:
    """--steps and --repeats; exits with a hint when TRL is not installed."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    require_trl()
    return args


@contextlib.contextmanager
def workspace(prefix: str):
    """A temporary directory with its own cache and the simulated feedback files: yields (workdir, data dir)."""
    from rlhf.data.simulated_feedback import write_feedback

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        os.environ["RLHF_CACHE_DIR"] = str(workdir / ".cache")
        write_feedback(workdir / "feedback")
        yield workdir, workdir / "feedback"
