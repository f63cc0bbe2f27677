"""The KV cache of sampling: a cache grown by concatenation at every new token (what ``sample`` did before), a
static cache allocated once for the whole length (transformers' ``StaticCache``, what it does now for compilable
architectures), and the static cache with the one-token step through ``torch.compile`` (``method.compile_generation``).

One command, the same model, prompts and keyed randomness in every arm, arms alternating; the configurations of
``shared_prompt_sampling.py`` (PPO's tiny policy, and 6 layers x 512 with 128-token prompts and 64 new tokens;
16 prompts x 4 samples) and the rollout of ``ppo_vs_trl.py --config 6x512`` (16 prompts of about 12 tokens, one
sample each, 64 new tokens); random-init GPT-2, vocabulary 4,096, CPU, 2 threads. Printed: median seconds per sampling
call after one warm-up round, the ratio to the grown cache, the compiled arm's first call (which compiles), and the
share of sampled tokens equal to the grown cache's (float rounding differs between the arms, so a near-tie can flip
a token and the rest of that row).

    python experiments/benchmarks/decode_cache.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from shared_prompt_sampling import CONFIGS, VOCAB, K
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf.models import policy
from rlhf.models.policy import sample

# name: (layers, hidden, heads, prompts, prompt tokens, new tokens, samples per prompt)
SHAPES = {**{name: (*shape, K) for name, shape in CONFIGS.items()},
                "ppo_vs_trl 6x512 rollout": (6, 512, 8, 16, 12, 64, 1)}


def grown_cache(model, length):  # stands in for policy._static_cache: no static cache, the cache grows
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="run only the configurations whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(2)
    static_cache = policy._static_cache
    for name, (layers, hidden, heads, prompts, length, new, k) in SHAPES.items():
        if args.only and args.only not in name:
            continue
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, vocab_size=VOCAB,
                                           n_positions=length + new, bos_token_id=1, eos_token_id=1)).eval()
        ids = torch.randint(2, VOCAB, (prompts, length))
        mask = torch.ones_like(ids)
        mask[: prompts // 2, : length // 8] = 0  # half the prompts left-padded
        settings = dict(max_new_tokens=new, eos_token_id=1, pad_token_id=0, banned_ids=[0], stop_early=False,
                        row_keys=torch.arange(prompts * k), stream=1, repeats=k)
        arms = {"grown cache (before)": (grown_cache, False), "static cache": (static_cache, False),
                "static + compiled step": (static_cache, True)}
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        tokens = {}
        for _ in range(args.repeats + 1):  # the first round warms up (and compiles) and is not counted
            for arm, (cache, compile_step) in arms.items():
                policy._static_cache = cache
                started = time.perf_counter()
                tokens[arm], _ = sample(model, ids, mask, compile_step=compile_step, **settings)
                times[arm].append(time.perf_counter() - started)
        policy._static_cache = static_cache
        med = {arm: statistics.median(t[1:]) for arm, t in times.items()}
        base = "grown cache (before)"
        print(f"{name}: {prompts} prompts x {k} samples")
        for arm, t in times.items():
            same = (tokens[arm] == tokens[base]).float().mean().item()
            print(f"  {arm:<24} {med[arm]:.3f} s/call  {med[base] / med[arm]:.2f}x  first call {t[0]:.1f} s  "
                  f"tokens equal to the grown cache's {same:.1%}  (runs {', '.join(f'{x:.3f}' for x in t[1:])})")


if __name__ == "__main__":
    main()
