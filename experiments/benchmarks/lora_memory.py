"""PPO's peak memory with and without LoRA, one command: the same 6-layer / 512-hidden GPT-2 policy (random init,
saved once with ``save_pretrained``, byte-level BPE 8,192 trained on BBC), the same prompts, batch and response
length, CPU. Without LoRA the run holds the policy, its frozen reference copy, gradients and two AdamW moments for
every weight; with ``model.lora.r=16`` (all linear layers) the reference is the policy with its adapters off and only
the adapters (and the value head) have gradients and optimizer state.

Printed per arm: peak RSS of the whole ``rlhf-train`` process (median over repeats, arms alternating), its peak RSS
above the same process's resident size after imports (``rss_over_start``: what the models, optimizer and activations
add), and the model-state bytes counted from the parameters. Goal: LoRA <= 0.6x without.

    python experiments/benchmarks/lora_memory.py --repeats 2 --iterations 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS, HIDDEN, HEADS, VOCAB, RANK = 6, 512, 8, 8192, 16
BATCH, NEW_TOKENS = 8, 32

# Runs rlhf-train in this process and reports the peak RSS and the RSS once the imports are done (before any model).
PROBE = """
import json, resource, sys
import rlhf.train, torch, transformers, lightning  # the imports every run pays
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.argv = ["rlhf-train", *sys.argv[1:]]
try:
    rlhf.train.main()
except SystemExit as stop:
    if stop.code:
        raise
print("PROBE " + json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "start_mb": start}))
"""


def make_base(directory: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf.data.corpora import bbc_news
    from rlhf.data.tokenizer import train_tokenizer

    if (directory / "config.json").exists():
        return directory
    tokenizer = train_tokenizer([doc["text"] for doc in bbc_news()], "bpe", VOCAB, 2, False)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=512,
                               bos_token_id=eos, eos_token_id=eos)).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def overrides(base: Path, lora: bool, iterations: int, run_dir: Path) -> list[str]:
    return ["experiment=ppo_tiny", "model=pretrained", f"model.name_or_path={base}", f"data.loader.batch_size={BATCH}",
            "method.num_minibatches=2", f"method.max_new_tokens={NEW_TOKENS}", "method.gold.kind=none",
            "optimized_metric=null", f"trainer.max_steps={iterations}", "trainer.limit_val_batches=0",
            "trainer.enable_checkpointing=false", "trainer.enable_model_summary=false", "test=false", "export=false",
            "logger=csv", "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}", f"paths.root_dir={run_dir.parent}",
            *([f"model.lora.r={RANK}", f"model.lora.alpha={2 * RANK}"] if lora else [])]


def model_state_mb(base: Path, lora: bool) -> float:
    """Bytes the run's weights, gradients and AdamW moments take (float32), counted from the parameters."""
    from transformers import AutoModelForCausalLM

    from rlhf.config.common import LoraConf
    from rlhf.models.lora import apply_lora

    model = AutoModelForCausalLM.from_pretrained(str(base))
    total = sum(p.numel() for p in model.parameters())
    if lora:
        trainable = sum(p.numel() for p in apply_lora(model, LoraConf(r=RANK, alpha=2.0 * RANK)).parameters()
                        if p.requires_grad)
        return (total + 3 * trainable) * 4 / 2**20  # base + (grad + 2 moments) of the adapters; no reference copy
    return (2 * total + 3 * total) * 4 / 2**20  # policy + reference + grad + 2 moments


def measure(base: Path, lora: bool, iterations: int, workdir: Path) -> dict:
    run_dir = workdir / f"{'lora' if lora else 'full'}-{len(list(workdir.glob('*-*')))}"
    out = subprocess.run([sys.executable, "-c", PROBE, *overrides(base, lora, iterations, run_dir)], cwd=workdir,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"run failed ({'lora' if lora else 'full'}):\n{out.stderr[-3000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("PROBE "))
    return json.loads(line[len("PROBE "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = make_base(workdir / "base")
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):
            for lora in (False, True):
                runs[lora].append(measure(base, lora, args.iterations, workdir))
        rows = {}
        for lora, results in runs.items():
            peak = statistics.median(r["peak_mb"] for r in results)
            over = statistics.median(r["peak_mb"] - r["start_mb"] for r in results)
            rows[lora] = (peak, over, model_state_mb(base, lora))
        print(f"PPO, GPT-2 {LAYERS} layers / {HIDDEN} hidden (vocab {VOCAB}), batch {BATCH}, {NEW_TOKENS} new tokens, "
              f"{args.iterations} iterations, {args.repeats} repeats; LoRA r={RANK} on all linear layers")
        print(f"{'arm':<10}{'peak RSS MB':>14}{'RSS over start MB':>20}{'model state MB':>17}")
        for lora, (peak, over, state) in rows.items():
            print(f"{'lora' if lora else 'full':<10}{peak:>14.0f}{over:>20.0f}{state:>17.0f}")
        ratio = [rows[True][i] / rows[False][i] for i in range(3)]
        print(f"{'lora/full':<10}{ratio[0]:>14.2f}{ratio[1]:>20.2f}{ratio[2]:>17.2f}   (goal: <= 0.6)")


if __name__ == "__main__":
    main()
