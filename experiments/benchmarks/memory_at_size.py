"""The largest policy SFT, DPO and PPO train in the machine's memory, with and without LoRA: peak RSS of
``rlhf-train`` runs on GPT-2-shaped policies of growing size (random init, CPU, float32), measured.

Each run: 2 optimizer steps (PPO: 2 iterations) at a small batch (4 demonstrations / 4 pairs / 4 prompts x 32 new
tokens, sequences of up to 96 tokens), no validation, checkpoint or export, so the peak is that of training itself:
the weights, a frozen reference (DPO, PPO: a copy without LoRA, the adapters switched off with it), gradients and two
AdamW moments of what trains, and the activations. The sizes are GPT-2's trunks (layers x hidden: small 12x768, medium
24x1024, large 36x1280, xl 48x1600) and GPT-Neo 2.7B's (32x2560), with a BPE vocabulary of 8,192 trained on BBC (so
fewer parameters than their own 50,257-token embeddings give). A size runs only if the peak predicted from the
size below it (measured peak above the imports, scaled by the parameter count) stays under ``--limit-gib``, so that
no run is killed for memory (the first size given always runs); the table says which sizes were predicted out and by
how much.

    python experiments/benchmarks/memory_at_size.py --limit-gib 20
    python experiments/benchmarks/memory_at_size.py --arms lora --shapes 32x2560
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from lora_memory import PROBE

SHAPES = {"12x768": (12, 768, 12), "24x1024": (24, 1024, 16), "36x1280": (36, 1280, 20), "48x1600": (48, 1600, 25),
          "32x2560": (32, 2560, 20)}
VOCAB, POSITIONS, RANK = 8192, 256, 16
METHODS = {
    "sft": ["experiment=sft_tiny", "data.loader.batch_size=4"],
    "dpo": ["experiment=dpo_tiny", "data.loader.batch_size=4", "method.evaluation.enabled=false"],
    "ppo": ["experiment=ppo_tiny", "data.loader.batch_size=4", "method.num_minibatches=1", "method.max_new_tokens=32",
            "method.gold.kind=none"],
}
COMMON = [f"model.tokenizer.vocab_size={VOCAB}", "trainer.max_steps=2", "trainer.limit_val_batches=0",
          "trainer.enable_checkpointing=false", "trainer.enable_model_summary=false", "test=false", "export=false",
          "optimized_metric=null", "logger=csv", "callbacks.progress_bar=null", "callbacks.lr_monitor=null",
          "model.dropout=0", "model.attention_dropout=0"]


def parameters(shape: str) -> int:
    """Parameters of the GPT-2 policy of ``shape`` (blocks, tied embeddings, positions, layer norms)."""
    layers, hidden, _ = SHAPES[shape]
    return layers * (12 * hidden * hidden + 13 * hidden) + (VOCAB + POSITIONS + 2) * hidden


def run(method: str, shape: str, lora: bool, workdir: Path) -> dict:
    layers, hidden, heads = SHAPES[shape]
    run_dir = workdir / f"{method}-{shape}-{'lora' if lora else 'full'}"
    overrides = [*METHODS[method], *COMMON, f"model.num_layers={layers}", f"model.hidden_size={hidden}",
                 f"model.num_heads={heads}", f"model.intermediate_size={4 * hidden}", f"hydra.run.dir={run_dir}",
                 f"paths.root_dir={workdir}", *([f"model.lora.r={RANK}", f"model.lora.alpha={2 * RANK}"] if lora else [])]
    out = subprocess.run([sys.executable, "-c", PROBE, *overrides], cwd=workdir, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr[-2000:]}
    return json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PROBE "))[len("PROBE "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-gib", type=float, default=20.0, help="run a size only if its predicted peak is below")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="sizes to try")
    parser.add_argument("--arms", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for lora in (arm == "lora" for arm in args.arms):
                previous = None
                for shape in args.shapes:
                    if previous is not None:
                        (prev_shape, prev) = previous
                        over = (prev["peak_mb"] - prev["start_mb"]) * parameters(shape) / parameters(prev_shape)
                        predicted = (prev["start_mb"] + over) / 1024
                        if predicted > args.limit_gib:
                            results[(method, lora, shape)] = f"not run: {predicted:.1f} predicted"
                            print(f"{method} {'lora' if lora else 'full'} {shape}: predicted {predicted:.1f} GiB, "
                                  f"over --limit-gib {args.limit_gib}: not run", flush=True)
                            continue
                    result = run(method, shape, lora, Path(tmp))
                    if "error" in result:
                        raise SystemExit(f"{method} {shape} lora={lora} failed:\n{result['error']}")
                    previous = (shape, result)
                    results[(method, lora, shape)] = f"{result['peak_mb'] / 1024:.1f}"
                    print(f"{method} {'lora' if lora else 'full'} {shape} ({parameters(shape) / 1e6:.0f}M parameters):"
                          f" peak RSS {result['peak_mb'] / 1024:.2f} GiB (after imports "
                          f"{result['start_mb'] / 1024:.2f})", flush=True)
    print(f"\nPeak RSS (GiB) of 2 training steps, float32, CPU; LoRA r={RANK} on all linear layers")
    print("| method | " + " | ".join(f"{s} ({parameters(s) / 1e6:.0f}M)" for s in args.shapes) + " |")
    print("|---|" + "---:|" * len(args.shapes))
    for method in args.methods:
        for lora in (arm == "lora" for arm in args.arms):
            cells = [results.get((method, lora, s), "") for s in args.shapes]
            print(f"| {method}{' + LoRA' if lora else ''} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
