"""PPO/GRPO sampling with several samples per prompt: one prompt encoding for all of a prompt's samples
(``sample(..., repeats=k)``, what PPO's rollout now does) against encoding the prompt again for each sample (the
prompts repeated k times, what it did before), one command, the same model, prompts and keyed randomness on both
sides (so both sample the same tokens: checked).

Two configurations: the tiny PPO policy of the ppo_vs_trl benchmark (2 layers, hidden 128, 16 prompts of the BBC
headlines' length, 24 new tokens) and the issue's larger one (6 layers, hidden 512, 64 new tokens) with 128-token
prompts. Random-init GPT-2, vocabulary 4,096, CPU, k = 4 (experiment=ppo_tiny's GRPO setting). Printed: median
seconds per sampling call of each arm over the repeats (arms alternate), and the ratio.

    python experiments/benchmarks/shared_prompt_sampling.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf.models.policy import sample

CONFIGS = {  # name: (layers, hidden, heads, prompts, prompt tokens, new tokens)
    "tiny (2x128, prompt 16, 24 new)": (2, 128, 4, 16, 16, 24),
    "6x512, prompt 128, 64 new": (6, 512, 8, 16, 128, 64),
}
VOCAB, K = 4096, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for name, (layers, hidden, heads, prompts, length, new) in CONFIGS.items():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, vocab_size=VOCAB,
                                           n_positions=length + new, bos_token_id=1, eos_token_id=1)).eval()
        ids = torch.randint(2, VOCAB, (prompts, length))
        mask = torch.ones_like(ids)
        settings = dict(max_new_tokens=new, eos_token_id=1, pad_token_id=0, banned_ids=[0], stop_early=False,
                        row_keys=torch.arange(prompts * K), stream=1)
        arms = {"one encoding per prompt": (ids, mask, K),  # the prompts' rows and how often each is repeated
                "one per sample (before)": (ids.repeat_interleave(K, 0), mask.repeat_interleave(K, 0), 1)}
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        tokens = {}
        for _ in range(args.repeats + 1):  # the first round warms up and is not counted
            for arm, (arm_ids, arm_mask, repeats) in arms.items():
                started = time.perf_counter()
                tokens[arm], _ = sample(model, arm_ids, arm_mask, repeats=repeats, **settings)
                times[arm].append(time.perf_counter() - started)
        assert torch.equal(*tokens.values()), "the two arms sampled different tokens"
        med = {arm: statistics.median(t[1:]) for arm, t in times.items()}
        print(f"{name}: {prompts} prompts x {K} samples")
        for arm, t in times.items():
            print(f"  {arm:<26} {med[arm]:.3f} s/call (runs {', '.join(f'{x:.3f}' for x in t[1:])})")
        print(f"  speed-up {med['one per sample (before)'] / med['one encoding per prompt']:.2f}x (same tokens)")


if __name__ == "__main__":
    main()
