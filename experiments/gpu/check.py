"""The GPU check: every method for a fixed number of steps on a GPT-2-small-sized model (random init) in bf16, one
``rlhf-train`` run each, printing throughput, model FLOPs utilisation (MFU), peak memory and, for PPO, the share of
time spent generating. ``--device cpu --tiny`` runs the same script end to end on CPU with tiny models (tested).

    python experiments/gpu/check.py                       # one GPU: about 6 minutes
    python experiments/gpu/check.py --device cpu --tiny   # anywhere: about 2 minutes
    python experiments/gpu/check.py --strategy deepspeed_stage_3 --steps 10   # ZeRO-3 on one GPU, exports checked

``--strategy deepspeed`` (ZeRO-2) or ``deepspeed_stage_3`` (ZeRO-3) runs the methods under Lightning's DeepSpeed
strategy (CUDA only; the deepspeed package travels as a wheel, see README.md), with the export on: each run's
export must load whole into its architecture (no missing, unexpected or mismatched weights), which under ZeRO-3
means the weights were gathered from their shards. PPO refuses DeepSpeed (it steps its optimizer itself) and is left
out there. ``ppo+compile`` is PPO with ``method.compile_generation=true`` (the one-token decoding step through
``torch.compile``), to see whether compiling pays on the device.

Model FLOPs per trained token, with N = 12 L d^2 + V d (the transformer blocks and the tied output layer): 6N for
a forward and backward pass (MLM, SFT, reward, PWP); DPO 8N (plus the frozen reference's forward); KTO 12N (policy
forward+backward and the reference's forward on the examples, policy and reference forwards on the mismatched KL
rows). PPO per iteration: generation 2N per sampled token (KV cache; attention over the cache left out), the old and
reference log-prob passes 2N each per sequence token, and ``ppo_epochs`` updates at 6N (the value head's cost is
negligible). MFU = model FLOPs/s / ``--peak-tflops`` (default 989: the H200's dense bf16 figure). Throughput is the
harmonic mean over the logging windows after the first (start-up, tokenizer training and compilation excluded).
Writes ``<out>/gpu_check.json`` with every number.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SMALL = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072}  # GPT-2 small / BERT base
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
# method -> (experiment, model FLOPs per trained token in units of N, extra overrides)
METHODS = {
    "mlm": ("mlm_tiny", 6, ["data.block_size=256", "data.loader.batch_size=32"]),
    "reward": ("reward_tiny", 6, ["data.loader.batch_size=32", "data.max_length=128"]),
    "sft": ("sft_tiny", 6, ["data.loader.batch_size=32", "data.max_length=128"]),
    "pwp": ("pwp_tiny", 6, ["data.loader.batch_size=32"]),
    "dpo": ("dpo_tiny", 8, ["data.loader.batch_size=16", "data.max_length=128", "method.evaluation.enabled=false"]),
    "kto": ("kto_tiny", 12, ["data.loader.batch_size=16", "data.max_length=128"]),
    "ppo": ("ppo_tiny", None, ["data.loader.batch_size=64", "method.max_new_tokens=64"]),
    "ppo+compile": ("ppo_tiny", None, ["data.loader.batch_size=64", "method.max_new_tokens=64",
                                       "method.compile_generation=true"]),
}
DEEPSPEED = ("deepspeed", "deepspeed_stage_3")  # strategy configs: ZeRO-2, ZeRO-3


def overrides(method: str, args: argparse.Namespace, run_dir: Path) -> list[str]:
    experiment, _, extra = METHODS[method]
    size = TINY if args.tiny else SMALL
    common = [f"experiment={experiment}", *(f"model.{k}={v}" for k, v in size.items()),
              f"model.tokenizer.vocab_size={1024 if args.tiny else 32768}", f"trainer.max_steps={args.steps}",
              f"trainer.log_every_n_steps={args.log_every}", "trainer.limit_val_batches=0", "test=false",
              f"export={args.strategy in DEEPSPEED}", f"strategy={args.strategy}",
              "evaluate_at_start=false", "logger=csv", "callbacks.progress_bar=null", "callbacks.checkpoint=null",
              "trainer.enable_checkpointing=false", "trainer.enable_model_summary=false", f"hydra.run.dir={run_dir}"]
    if args.device == "cuda":
        common += ["trainer=gpu", "trainer.devices=1"]  # bf16-mixed
    else:
        common += ["trainer=cpu"]
    if args.tiny:
        extra = [e for e in extra if not e.startswith(("data.loader.batch_size", "data.block_size", "data.max_length",
                                                       "method.max_new_tokens"))]
        extra += ["data.loader.batch_size=8"] + (["method.max_new_tokens=8"] if is_ppo(method) else [])
        if method in ("reward", "sft", "dpo", "kto"):
            extra.append("data.source.max_articles=80")
    return common + extra


def is_ppo(method: str) -> bool:
    return METHODS[method][1] is None  # PPO's FLOPs are counted per iteration, not per token


def export_loads_whole(export: Path) -> bool:
    """Whether the export loads into the architecture its config names with every weight present and shaped."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(export)
    model_class = getattr(transformers, config.architectures[0])
    _, info = model_class.from_pretrained(export, output_loading_info=True)
    return not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def steady(values: list[float]) -> float:
    """Harmonic mean of the per-window rates after the first window."""
    later = values[1:] or values
    return len(later) / sum(1 / v for v in later)


def measure(method: str, args: argparse.Namespace) -> dict:
    run_dir = args.out / method
    started = time.perf_counter()
    env = {**os.environ, "WANDB_MODE": "disabled", "RLHF_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "rlhf.train", *overrides(method, args, run_dir)], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        return {"method": method, "error": done.stderr[-1500:], "wall_s": wall}
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(run_dir / "tokenizer"))
    size = TINY if args.tiny else SMALL
    n = 12 * size["num_layers"] * size["hidden_size"] ** 2 + vocab * size["hidden_size"]
    logged = rows(run_dir)
    memory = [float(r[k]) for r in logged for k in ("train/peak_gpu_memory_gb", "train/peak_rss_gb") if r.get(k)]
    result = {"method": method, "params_N": n, "vocab": vocab, "wall_s": wall, "peak_memory_gb": max(memory or [0.0]),
              "memory_kind": "gpu" if args.device == "cuda" else "process RSS", "strategy": args.strategy}
    if args.strategy in DEEPSPEED:
        try:
            result["export_loads_whole"] = export_loads_whole(run_dir / "export")
        except Exception as err:  # an export that does not load fails this method, not the rest of the check
            result.update(export_loads_whole=False, export_error=f"{type(err).__name__}: {err}")
    if is_ppo(method):
        cfg = _config(run_dir)
        timed = [r for r in logged if r.get("time/iteration")]
        later = timed[2:] or timed  # the first iterations warm up (allocator, kernels)
        per_iter = statistics.median(float(r["time/iteration"]) for r in later)
        generate = sum(float(r["time/generate"]) for r in later) / sum(float(r["time/iteration"]) for r in later)
        prompts, k = cfg["data"]["loader"]["batch_size"], cfg["method"]["samples_per_prompt"]
        rates = [float(r["train/tokens_per_sec"]) for r in logged if r.get("train/tokens_per_sec")]
        prompt_len = statistics.median(rates) * per_iter / prompts  # the throughput callback counts prompt tokens
        new, seq = cfg["method"]["max_new_tokens"], prompt_len + cfg["method"]["max_new_tokens"]
        flops = prompts * k * (2 * n * new + 2 * 2 * n * seq + cfg["method"]["ppo_epochs"] * 6 * n * seq)
        result.update(episodes_per_sec=prompts * k / per_iter, s_per_iteration=per_iter, generation_share=generate,
                      mfu=flops / per_iter / (args.peak_tflops * 1e12))
    else:
        tokens = steady([float(r["train/tokens_per_sec"]) for r in logged if r.get("train/tokens_per_sec")])
        result.update(tokens_per_sec=tokens, mfu=METHODS[method][1] * n * tokens / (args.peak_tflops * 1e12))
    return result


def _config(run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(run_dir / "config_resolved.yaml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models and few steps (a CPU smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="steps per method (default 40; --tiny 6)")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="default: all (under DeepSpeed: all but PPO's, which refuse it)")
    parser.add_argument("--strategy", choices=["auto", *DEEPSPEED], default="auto",
                        help="deepspeed: ZeRO-2; deepspeed_stage_3: ZeRO-3 (CUDA and the deepspeed package needed)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak")
    parser.add_argument("--out", type=Path, default=Path("logs/gpu_check"))
    args = parser.parse_args()
    args.steps = args.steps or (6 if args.tiny else 40)
    args.log_every = 2 if args.tiny else 5
    if args.strategy in DEEPSPEED:
        if args.device != "cuda":
            raise SystemExit(f"--strategy {args.strategy}: Lightning runs DeepSpeed on CUDA devices only")
        if importlib.util.find_spec("deepspeed") is None:
            raise SystemExit("--strategy deepspeed needs the deepspeed package: carry its wheel (experiments/gpu/README.md)")
        refused = [m for m in args.methods or [] if is_ppo(m)]
        if refused:
            raise SystemExit(f"{', '.join(refused)}: PPO refuses DeepSpeed (it steps its optimizer itself)")
    args.methods = args.methods or [m for m in METHODS if not (args.strategy in DEEPSPEED and is_ppo(m))]
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --device cpu --tiny")
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for method in args.methods:
        result = measure(method, args)
        results.append(result)
        if "error" in result:
            print(f"{method:<11} FAILED after {result['wall_s']:.0f} s:\n{result['error']}", flush=True)
            continue
        rate = (f"{result['episodes_per_sec']:8.1f} episodes/s, generation {result['generation_share']:.0%} of an "
                f"iteration" if is_ppo(method) else f"{result['tokens_per_sec']:10.0f} tokens/s")
        export = (f", export loads whole: {'yes' if result['export_loads_whole'] else 'NO'}"
                  f"{' (' + result['export_error'] + ')' if 'export_error' in result else ''}"
                  if "export_loads_whole" in result else "")
        print(f"{method:<11} {rate}  MFU {result['mfu']:.1%}  peak {result['memory_kind']} "
              f"{result['peak_memory_gb']:.2f} GiB  (N = {result['params_N'] / 1e6:.1f}M, wall {result['wall_s']:.0f} s"
              f"{export})", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    failed = [r["method"] for r in results if "error" in r or r.get("export_loads_whole") is False]
    print(f"\nwrote {args.out / 'gpu_check.json'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
