"""Reward-model training: ``rlhf-train method=reward`` vs TRL's ``RewardTrainer`` on the same pairs and model.

Both train the same tiny GPT-2 reward model (same config, the same byte-level BPE tokenizer, head init std
1/sqrt(d+1), dropout off as TRL does by default) on the same simulated VADER preference pairs, with the same batch,
steps, AdamW settings, warm-up/linear decay and clipping, on CPU. Printed per run: training throughput in pairs/s
(steps after the first logging window; start-up and tokenization excluded on both sides) and held-out accuracy on
the same test pairs, each framework evaluating with its own input format (ours: prompt / response / EOS tokens;
TRL: prompt+response text + EOS). Runs alternate (ours, TRL, ours, TRL, ...).

    pip install -e ".[bench]"          # TRL is needed only here
    python experiments/benchmarks/reward_vs_trl.py --repeats 2 --steps 300

Goal: ours >= 1.0x TRL's throughput at equal accuracy.
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

MODEL = dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512)
BATCH, MAX_LENGTH, LOG_EVERY, LR, WARMUP = 32, 96, 10, 5e-4, 20


def ours_overrides(steps: int, data: Path) -> list[str]:
    return [
        "experiment=reward_tiny", "model.arch=gpt2", "model.tokenizer.algorithm=bpe", "model.tokenizer.vocab_size=4096",
        *(f"model.{k}={v}" for k, v in MODEL.items()), "model.dropout=0.0", "model.attention_dropout=0.0",
        "data=feedback_file", f"data.source.path='{data}/pairs_{{split}}.jsonl'", f"data.max_length={MAX_LENGTH}",
        f"data.loader.batch_size={BATCH}", f"method.lr={LR}", f"method.warmup_steps={WARMUP}", "method.min_lr_ratio=0",
        f"trainer.max_steps={steps}", f"trainer.log_every_n_steps={LOG_EVERY}", "trainer.limit_val_batches=0",
        "trainer.enable_checkpointing=false", "trainer.enable_model_summary=false", "export=false",
        "trainer.limit_test_batches=1.0", "logger=csv", "callbacks.progress_bar=null", "callbacks.lr_monitor=null",
    ]


def run_ours(steps: int, workdir: Path, data: Path) -> tuple[dict, Path]:
    run_dir = workdir / f"ours-{time.time_ns()}"
    started = time.perf_counter()
    subprocess.run(["rlhf-train", *ours_overrides(steps, data), f"hydra.run.dir={run_dir}",
                    f"paths.root_dir={workdir}"], check=True, cwd=workdir, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as handle:
        rates = [float(r["train/samples_per_sec"]) / 2 for r in csv.DictReader(handle) if r.get("train/samples_per_sec")]
    steady = rates[1:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"pairs_per_sec": len(steady) / sum(1 / r for r in steady), "test_accuracy": metrics["test/accuracy"],
            "wall_s": wall}, run_dir / "tokenizer"


TRL_WORKER = r'''
import json, sys, time, os
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import torch
from datasets import Dataset
from transformers import AutoTokenizer, GPT2ForSequenceClassification, TrainerCallback
from trl import RewardConfig, RewardTrainer
from rlhf.models.reward import gpt2_config, init_reward_head

steps, batch, max_length, log_every, lr, warmup = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                                   int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
data, tokenizer_dir, out, model_cfg = sys.argv[7], sys.argv[8], sys.argv[9], json.loads(sys.argv[10])
started = time.perf_counter()
torch.manual_seed(42)
tok = AutoTokenizer.from_pretrained(tokenizer_dir)
def load(split):
    rows = [json.loads(l) for l in open(f"{data}/pairs_{split}.jsonl")]
    return Dataset.from_list([{"prompt": r["prompt"] + " ", "chosen": r["chosen"], "rejected": r["rejected"]}
                              for r in rows])
cfg = {**model_cfg, "max_position_embeddings": 512, "dropout": 0.0, "attention_dropout": 0.0}
model = GPT2ForSequenceClassification(gpt2_config(cfg, tok, num_labels=1))
init_reward_head(model)

class Window(TrainerCallback):
    def __init__(self):
        self.marks = []
    def on_step_end(self, args, state, control, **kw):
        if state.global_step % log_every == 0:
            self.marks.append(time.perf_counter())

window = Window()
args = RewardConfig(output_dir=out + "-trl", max_steps=steps, per_device_train_batch_size=batch,
                    per_device_eval_batch_size=batch, learning_rate=lr, weight_decay=0.01, warmup_steps=warmup,
                    lr_scheduler_type="linear", max_grad_norm=1.0, logging_steps=log_every, save_strategy="no",
                    eval_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, dataloader_drop_last=True,
                    seed=42, max_length=max_length, bf16=False, dataloader_num_workers=0)
trainer = RewardTrainer(model=model, args=args, train_dataset=load("train"), processing_class=tok,
                        callbacks=[window])
trainer.train()
spans = [b - a for a, b in zip(window.marks, window.marks[1:])]
evaluation = trainer.evaluate(load("test"))
json.dump({"pairs_per_sec": log_every * batch * len(spans) / sum(spans),
           "test_accuracy": evaluation.get("eval_accuracy"), "wall_s": time.perf_counter() - started}, open(out, "w"))
'''


def run_trl(steps: int, workdir: Path, data: Path, tokenizer_dir: Path) -> dict:
    out = workdir / f"trl-{time.time_ns()}.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", TRL_WORKER, str(steps), str(BATCH), str(MAX_LENGTH), str(LOG_EVERY), str(LR),
                    str(WARMUP), str(data), str(tokenizer_dir), str(out), json.dumps(MODEL)],
                   check=True, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit("TRL is not installed: pip install -e '.[bench]'") from None
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rlhf.data.simulated_feedback import write_feedback

    with tempfile.TemporaryDirectory(prefix="rlhf-bench-rm-") as tmp:
        workdir = Path(tmp)
        os.environ["RLHF_CACHE_DIR"] = str(workdir / ".cache")
        data = workdir / "feedback"
        write_feedback(data)
        results: dict[str, list[dict]] = {"rlhf-train": [], "trl": []}
        for i in range(args.repeats):
            ours, tokenizer_dir = run_ours(args.steps, workdir, data)
            results["rlhf-train"].append(ours)
            results["trl"].append(run_trl(args.steps, workdir, data, tokenizer_dir))
            for name in results:
                r = results[name][-1]
                print(f"[{i + 1}/{args.repeats}] {name:<10} {r['pairs_per_sec']:7.1f} pairs/s  test accuracy "
                      f"{r['test_accuracy']:.3f}  (wall {r['wall_s']:.1f} s incl. start-up)", flush=True)
    med = {n: statistics.median(r["pairs_per_sec"] for r in rs) for n, rs in results.items()}
    acc = {n: statistics.mean(r["test_accuracy"] for r in rs) for n, rs in results.items()}
    print(f"\ntiny GPT-2 RM {MODEL}, batch {BATCH} pairs, max_length {MAX_LENGTH}, {args.steps} steps")
    for name in results:
        print(f"{name:<10}: {med[name]:7.1f} pairs/s (median of {args.repeats}), mean test accuracy {acc[name]:.3f}")
    ratio = med["rlhf-train"] / med["trl"]
    print(f"throughput ratio rlhf/trl = {ratio:.2f} (goal >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'}); "
          f"accuracy difference {acc['rlhf-train'] - acc['trl']:+.3f}")


if __name__ == "__main__":
    main()
