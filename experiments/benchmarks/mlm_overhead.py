"""Framework overhead of masked-LM pretraining: ``rlhf-train`` vs a plain Hugging Face ``Trainer``.

Both train the same tiny BERT (same config, tokenizer, packed BBC blocks, batch size, steps, AdamW, clipping) on CPU
and report training throughput in tokens/s over the same window (steps after the first logging window, so start-up,
tokenizer and data preparation are excluded on both sides). Runs are interleaved (A B A B ...) so that drifts of a
shared machine hit both alike; the medians and their ratio are printed.

    python experiments/benchmarks/mlm_overhead.py              # 2 repeats of each, 200 steps
    python experiments/benchmarks/mlm_overhead.py --repeats 3 --steps 300

Needs the dev or bench extra (accelerate, for the HF Trainer). Goal: ratio rlhf / HF >= 0.95.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, vocab=4096)
BLOCK, BATCH, LOG_EVERY = 64, 32, 10


def rlhf_overrides(steps: int) -> list[str]:
    return [
        "model=tiny_bert",  # the same BertForMaskedLM as the HF Trainer side
        f"trainer.max_steps={steps}", f"trainer.log_every_n_steps={LOG_EVERY}", "trainer.limit_val_batches=0",
        "trainer.enable_checkpointing=false", "trainer.enable_model_summary=false", "test=false", "export=false",
        "logger=csv", "callbacks.progress_bar=null", "callbacks.lr_monitor=null",
        f"model.hidden_size={MODEL['hidden_size']}", f"model.num_layers={MODEL['num_layers']}",
        f"model.num_heads={MODEL['num_heads']}", f"model.intermediate_size={MODEL['intermediate_size']}",
        f"model.tokenizer.vocab_size={MODEL['vocab']}", f"data.block_size={BLOCK}", f"data.loader.batch_size={BATCH}",
    ]


def run_rlhf(steps: int, workdir: Path) -> dict:
    """(a) the real command line; throughput from the train/tokens_per_sec windows it logs."""
    run_dir = workdir / f"rlhf-{time.time_ns()}"
    started = time.perf_counter()
    subprocess.run(["rlhf-train", *rlhf_overrides(steps), f"hydra.run.dir={run_dir}", f"paths.root_dir={workdir}"],
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    rates = []
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as handle:
        rates = [float(row["train/tokens_per_sec"]) for row in csv.DictReader(handle) if row.get("train/tokens_per_sec")]
    steady = rates[1:]  # the first window includes the first batch's one-off costs
    # equal tokens per window: the mean rate over windows is the harmonic mean of the window rates
    return {"tokens_per_sec": len(steady) / sum(1 / r for r in steady), "wall_s": wall, "windows": len(steady)}


HF_WORKER = r'''
import json, sys, time, os
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import torch
from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainerCallback,
                          TrainingArguments)
from rlhf.methods.mlm import MaskedLMDataModule

steps, block, batch, log_every, out, cache = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
model_cfg = json.loads(sys.argv[7])
started = time.perf_counter()
torch.manual_seed(42)
dm = MaskedLMDataModule(cfg={"source": {"kind": "bbc_news"}, "loader": {"batch_size": batch}, "cache_dir": cache,
                             "block_size": block}, seed=42,
                        tokenizer={"kind": "train", "algorithm": "wordpiece", "vocab_size": model_cfg["vocab"]})
tok = dm.tokenizer
blocks = dm.build_dataset("train").items  # the same packed blocks rlhf-train uses
train = [{"input_ids": [tok.cls_token_id, *ids, tok.sep_token_id]} for ids, _ in blocks]
config = BertConfig(vocab_size=len(tok), hidden_size=model_cfg["hidden_size"], num_hidden_layers=model_cfg["num_layers"],
                    num_attention_heads=model_cfg["num_heads"], intermediate_size=model_cfg["intermediate_size"],
                    max_position_embeddings=512, pad_token_id=tok.pad_token_id, type_vocab_size=2)
model = BertForMaskedLM(config)

class Window(TrainerCallback):
    def __init__(self):
        self.marks = []
    def on_step_end(self, args, state, control, **kw):
        if state.global_step % log_every == 0:
            self.marks.append(time.perf_counter())

window = Window()
args = TrainingArguments(output_dir=out + "-hf", max_steps=steps, per_device_train_batch_size=batch,
                         learning_rate=1e-3, weight_decay=0.01, warmup_steps=50, lr_scheduler_type="linear",
                         max_grad_norm=1.0, logging_steps=log_every, save_strategy="no", eval_strategy="no",
                         report_to=[], disable_tqdm=True, use_cpu=True, dataloader_drop_last=True, seed=42,
                         dataloader_num_workers=0)
collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
Trainer(model=model, args=args, train_dataset=train, data_collator=collator, callbacks=[window]).train()
tokens_per_window = log_every * batch * block
spans = [b - a for a, b in zip(window.marks, window.marks[1:])]
json.dump({"tokens_per_sec": tokens_per_window * len(spans) / sum(spans), "wall_s": time.perf_counter() - started,
           "windows": len(spans)}, open(out, "w"))
'''


def run_hf(steps: int, workdir: Path) -> dict:
    """(b) a plain HF Trainer + DataCollatorForLanguageModeling on the same blocks."""
    out = workdir / f"hf-{time.time_ns()}.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", HF_WORKER, str(steps), str(BLOCK), str(BATCH), str(LOG_EVERY), str(out),
                    str(workdir / ".cache" / "tokenizers"), json.dumps(MODEL)],
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-") as tmp:
        workdir = Path(tmp)
        os.environ["RLHF_CACHE_DIR"] = str(workdir / ".cache")
        results: dict[str, list[dict]] = {"rlhf-train": [], "hf-trainer": []}
        for i in range(args.repeats):
            for name, fn in (("rlhf-train", run_rlhf), ("hf-trainer", run_hf)):
                result = fn(args.steps, workdir)
                results[name].append(result)
                print(f"[{i + 1}/{args.repeats}] {name:<10}  {result['tokens_per_sec']:9.0f} tokens/s  "
                      f"(wall {result['wall_s']:.1f} s incl. start-up, {result['windows']} windows)", flush=True)
    medians = {name: statistics.median(r["tokens_per_sec"] for r in runs) for name, runs in results.items()}
    walls = {name: statistics.median(r["wall_s"] for r in runs) for name, runs in results.items()}
    ratio = medians["rlhf-train"] / medians["hf-trainer"]
    print(f"\nsame model ({MODEL}), block {BLOCK}, batch {BATCH}, {args.steps} steps, torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"rlhf-train : {medians['rlhf-train']:9.0f} tokens/s (median of {args.repeats}), wall {walls['rlhf-train']:.1f} s")
    print(f"hf-trainer : {medians['hf-trainer']:9.0f} tokens/s (median of {args.repeats}), wall {walls['hf-trainer']:.1f} s")
    print(f"ratio rlhf/hf = {ratio:.3f}   (goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")


if __name__ == "__main__":
    main()
