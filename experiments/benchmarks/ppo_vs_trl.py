"""PPO throughput: ``rlhf-train method=ppo`` vs TRL's v1 ``PPOTrainer`` (trl 0.11.4, the last release whose classic
PPO runs offline with a model built from config), same policy, prompts, batch and response length, one command.

Both sides: a randomly initialised GPT-2 (``--config tiny``: 2 layers, hidden 128, 4 heads, n_inner 512, 24 new
tokens; ``--config 6x512``: 6 layers, hidden 512, 8 heads, n_inner 2048, 64 new tokens; the byte-level BPE 4,096
tokenizer our run trains on BBC and TRL reuses), a value head on the policy trunk, a frozen reference copy, dropout
off, VADER compound sentiment of the response as the reward (a Python scorer on both sides), batch 16 prompts (the
same prompts: first 8 words of BBC sentences), new tokens by pure sampling (top_k=0, top_p=1, T=1), minibatch 8,
4 PPO epochs, lr 1e-4, KL coefficient 0.05 (fixed), CPU, 2 threads. Printed per side: episodes/s (median over the
iterations after the first 3), time per phase (median per iteration), peak RSS. Runs alternate ours, TRL, ours, ...

    python3 -m venv .bench-trl && .bench-trl/bin/pip install torch==2.13.0 trl==0.11.4 transformers==4.45.2 \
        accelerate==1.0.1 datasets==3.0.2 rich vaderSentiment
    python experiments/benchmarks/ppo_vs_trl.py --trl-python .bench-trl/bin/python --repeats 3 --iterations 30
    python experiments/benchmarks/ppo_vs_trl.py --config 6x512 --repeats 3 --iterations 12
    python experiments/benchmarks/ppo_vs_trl.py --ours method.compile_generation=true   # our run with overrides

Goals: ours >= 1.5x TRL's episodes/s on the tiny config, >= 1.3x on 6x512.
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
from pathlib import Path

BATCH, MINIBATCH, EPOCHS, LR, KL = 16, 8, 4, 1e-4, 0.05
CONFIGS = {  # the policy (our model.* names) and the response length of each configuration
    "tiny": {"model": dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512), "new_tokens": 24,
             "goal": 1.5},
    "6x512": {"model": dict(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048), "new_tokens": 64,
              "goal": 1.3},
}
SKIP = 3  # warm-up iterations left out of the medians


def ours_overrides(iterations: int, config: str = "tiny") -> list[str]:
    setup = CONFIGS[config]
    return [
        "experiment=ppo_tiny", *(f"model.{k}={v}" for k, v in setup["model"].items()),
        "model.tokenizer.vocab_size=4096",
        f"data.loader.batch_size={BATCH}", f"method.num_minibatches={BATCH // MINIBATCH}", f"method.ppo_epochs={EPOCHS}",
        f"method.max_new_tokens={setup['new_tokens']}", f"method.lr={LR}", f"method.kl_coef={KL}", "method.gold.kind=none",
        "optimized_metric=null", f"trainer.max_steps={iterations}",
        "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0", "trainer.enable_checkpointing=false",
        "trainer.enable_model_summary=false", "test=false", "export=false", "logger=csv", "callbacks.progress_bar=null",
        "callbacks.lr_monitor=null", "callbacks.throughput=null",
    ]


def peak_rss_mb_of(cmd: list[str], **kwargs) -> float:
    """Run ``cmd`` in a fresh process (via a tiny wrapper) and return its peak RSS in MB."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True, **kwargs)
    return float(out.stdout.strip().splitlines()[-1])


def run_ours(iterations: int, workdir: Path, config: str, extra: list[str]) -> tuple[dict, Path]:
    run_dir = workdir / f"ours-{len(list(workdir.glob('ours-*')))}"
    rss = peak_rss_mb_of(["rlhf-train", *ours_overrides(iterations, config), *extra, f"hydra.run.dir={run_dir}",
                          f"paths.root_dir={workdir}"], cwd=workdir)
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/episodes_per_sec")][SKIP:]
    phases = {p: statistics.median(float(r[f"time/{p}"]) for r in rows)
              for p in ("generate", "score", "reference", "value", "update")}
    return {"episodes_per_sec": statistics.median(float(r["train/episodes_per_sec"]) for r in rows),
            "s_per_iteration": statistics.median(float(r["time/iteration"]) for r in rows), "phases": phases,
            "peak_rss_mb": rss, "response_length": statistics.mean(float(r["train/response_length"]) for r in rows)
            }, run_dir / "tokenizer"


TRL_WORKER = r'''
import json, sys, time
import torch
from transformers import GPT2Config, PreTrainedTokenizerFast
from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer, create_reference_model
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

args = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(2)
# transformers 4.45 cannot read the tokenizer_config.json that transformers 5 writes: load the tokenizer.json itself
tok = PreTrainedTokenizerFast(tokenizer_file=args["tokenizer"] + "/tokenizer.json", eos_token="<|endoftext|>",
                              bos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|pad|>")
prompts = [json.loads(line)["prompt"] for line in open(args["prompts"])]
model = args["model"]
config = GPT2Config(vocab_size=len(tok), n_embd=model["hidden_size"], n_layer=model["num_layers"],
                    n_head=model["num_heads"], n_inner=model["intermediate_size"], n_positions=256,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
from transformers import GPT2LMHeadModel
policy = AutoModelForCausalLMWithValueHead.from_pretrained(GPT2LMHeadModel(config))
ref = create_reference_model(policy)
ppo_config = PPOConfig(batch_size=args["batch"], mini_batch_size=args["minibatch"], ppo_epochs=args["epochs"],
                       learning_rate=args["lr"], init_kl_coef=args["kl"], adap_kl_ctrl=False, seed=0,
                       log_with=None, gradient_accumulation_steps=1)
trainer = PPOTrainer(ppo_config, policy, ref, tok)
vader = SentimentIntensityAnalyzer()
gen = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=args["new_tokens"],
           pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
rows = []
for it in range(args["iterations"]):
    batch = prompts[(it * args["batch"]) % len(prompts):][:args["batch"]]
    queries = [torch.tensor(tok(p, add_special_tokens=False)["input_ids"]) for p in batch]
    t0 = time.perf_counter()
    responses = trainer.generate(queries, return_prompt=False, batch_size=args["batch"], **gen)
    t1 = time.perf_counter()
    texts = tok.batch_decode(responses, skip_special_tokens=True)
    rewards = [torch.tensor(vader.polarity_scores(t)["compound"]) for t in texts]
    t2 = time.perf_counter()
    stats = trainer.step(queries, responses, rewards)
    t3 = time.perf_counter()
    rows.append({"generate": t1 - t0, "score": t2 - t1, "step": t3 - t2, "iteration": t3 - t0,
                 "forward": float(stats["time/ppo/forward_pass"]), "optimize": float(stats["time/ppo/optimize_step"]),
                 "response_length": sum(len(r) for r in responses) / len(responses)})
print("RESULT " + json.dumps(rows))
'''


def run_trl(iterations: int, workdir: Path, tokenizer: Path, prompts: Path, python: str, config: str) -> dict:
    python = str(Path(python).absolute())  # (not resolve(): a venv's python is a link to the base interpreter)
    script = workdir / "trl_worker.py"
    script.write_text(TRL_WORKER)
    args = json.dumps({"tokenizer": str(tokenizer), "prompts": str(prompts), "batch": BATCH, "minibatch": MINIBATCH,
                       "epochs": EPOCHS, "lr": LR, "kl": KL, "new_tokens": CONFIGS[config]["new_tokens"],
                       "model": CONFIGS[config]["model"], "iterations": iterations})
    wrapper = ("import resource, subprocess, sys; out = subprocess.run(sys.argv[1:], check=True, capture_output=True, "
               "text=True); print(out.stdout); print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss "
               "/ 1024)")
    out = subprocess.run([sys.executable, "-c", wrapper, python, str(script), args], check=True, capture_output=True,
                         text=True, cwd=workdir)
    rows = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])[SKIP:]
    rss = float(next(line for line in out.stdout.splitlines() if line.startswith("RSS "))[4:])
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"episodes_per_sec": statistics.median(BATCH / r["iteration"] for r in rows),
            "s_per_iteration": med["iteration"],
            "phases": {"generate": med["generate"], "score": med["score"], "forward (ref+value)": med["forward"],
                       "update": med["optimize"]},
            "peak_rss_mb": rss, "response_length": statistics.mean(r["response_length"] for r in rows)}


def write_prompts(tokenizer_run: Path, target: Path) -> None:
    """The training prompts of our data module, in our order (both sides use the same ones)."""
    from rlhf.methods.ppo import PromptDataModule

    dm = PromptDataModule(cfg={"source": {"kind": "bbc_news"}, "loader": {"batch_size": BATCH},
                               "cache_dir": str(tokenizer_run)},  # (a pretrained tokenizer: nothing is cached)
                          tokenizer={"kind": "pretrained", "name_or_path": str(tokenizer_run)}, seed=0)
    with open(target, "w") as handle:
        for prompt in dm.prompts("train"):
            handle.write(json.dumps({"prompt": prompt}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trl-python", default=".bench-trl/bin/python", help="python of the venv with trl 0.11.4")
    parser.add_argument("--config", choices=list(CONFIGS), default="tiny", help="the policy and response length")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ours", nargs="*", default=[], metavar="OVERRIDE",
                        help="extra overrides of our run, e.g. method.compile_generation=true")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    workdir = Path(tempfile.mkdtemp(prefix="ppo-bench-"))
    ours, trl = [], []
    tokenizer = prompts = None
    for repeat in range(args.repeats):
        result, tokenizer = run_ours(args.iterations, workdir, args.config, args.ours)
        ours.append(result)
        print(f"[{repeat}] ours: {json.dumps(result)}", flush=True)
        if prompts is None:
            prompts = workdir / "prompts.jsonl"
            write_prompts(tokenizer, prompts)
        result = run_trl(args.iterations, workdir, tokenizer, prompts, args.trl_python, args.config)
        trl.append(result)
        print(f"[{repeat}] trl 0.11.4 PPOTrainer: {json.dumps(result)}", flush=True)
    ours_eps = statistics.median(r["episodes_per_sec"] for r in ours)
    trl_eps = statistics.median(r["episodes_per_sec"] for r in trl)
    print("\n| implementation | episodes/s (median of runs) | s / iteration | peak RSS (MB) | mean response tokens |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in (("rlhf method=ppo (value head)", ours), ("trl 0.11.4 PPOTrainer (v1, value head)", trl)):
        each = ", ".join(f"{r['episodes_per_sec']:.1f}" for r in runs)
        print(f"| {name} | {statistics.median(r['episodes_per_sec'] for r in runs):.1f} ({each}) | "
              f"{statistics.median(r['s_per_iteration'] for r in runs):.3f} | "
              f"{max(r['peak_rss_mb'] for r in runs):.0f} | {statistics.mean(r['response_length'] for r in runs):.1f} |")
    for name, runs in (("ours", ours), ("trl", trl)):
        phases = {k: statistics.median(r["phases"][k] for r in runs) for k in runs[0]["phases"]}
        print(f"{name} time per phase (s): " + ", ".join(f"{k} {v:.3f}" for k, v in phases.items()))
    print(f"\n{args.config}: ratio ours / TRL episodes/s: {ours_eps / trl_eps:.2f} "
          f"(goal >= {CONFIGS[args.config]['goal']})")


if __name__ == "__main__":
    main()
