"""One yardstick for every method: the held-out gold score (VADER) of a policy's samples and their KL to the shared
SFT reference, on the same held-out prompts with the same sampling seed.

    python experiments/method_frontier/evaluate.py --reference <sft run>/export --policy <run>/export --out F.json

Prompts: the first ``--prompts`` distinct prompts of the simulated feedback task's test split (the pairs DPO holds
out: BBC headlines), rendered as every method's data layer renders them. ``--samples`` samples per prompt, pure
sampling (temperature 1, top-p 1) of ``--max-new-tokens`` tokens, the pad token banned. KL: the mean over samples of
sum_t log pi(y_t) - log pi_ref(y_t) (a Monte Carlo estimate of the sequence KL, unbiased since the samples come from
pi itself), with its standard error. Writes a JSON of the means, standard errors and counts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf.data.formats import render_prompt
from rlhf.models.policy import left_pad, response_logprobs, response_mask, sample
from rlhf.scoring.build import build_scorer
from rlhf.train import CONFIG_DIR  # (registers the schemas and resolvers)


def held_out_prompts(count: int, cache_dir: str) -> list[str]:
    """The first ``count`` distinct prompts of the test split of ``data=preference_pairs`` (the simulated task)."""
    from hydra.utils import get_class

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["experiment=dpo_tiny"])
    with open_dict(cfg):
        cfg.paths.cache_dir = cache_dir
        cfg.data.cache_dir = os.path.join(cache_dir, "tokenizers")
    datamodule = get_class(cfg.data._target_)(cfg=cfg.data, tokenizer=cfg.model.tokenizer, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("test")
    prompts = list(dict.fromkeys(r["prompt"] for r in datamodule.splits["test"]))
    if len(prompts) < count:
        raise SystemExit(f"only {len(prompts)} distinct test prompts; ask for --prompts {len(prompts)} or fewer")
    return prompts[:count]


@torch.no_grad()
def evaluate(policy_dir: str, reference_dir: str, prompts: list[str], samples: int, max_new_tokens: int, seed: int,
             batch_size: int = 64) -> dict[str, float]:
    tok = AutoTokenizer.from_pretrained(policy_dir)
    policy = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    reference = AutoModelForCausalLM.from_pretrained(reference_dir).eval()
    scorer = build_scorer({"kind": "gold", "name": "vader"}, "evaluate.py gold scorer")
    start = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
    banned = [tok.pad_token_id]
    rendered = [render_prompt(tok, p) for p in prompts for _ in range(samples)]
    generator = torch.Generator().manual_seed(seed)
    scores, kls, lengths = [], [], []
    for begin in range(0, len(rendered), batch_size):
        chunk = rendered[begin:begin + batch_size]
        ids, mask = left_pad([start + tok(p, add_special_tokens=False)["input_ids"] for p in chunk], tok.pad_token_id)
        out, _ = sample(policy, ids, mask, max_new_tokens, tok.eos_token_id, tok.pad_token_id, 1.0, 0, 1.0,
                        generator, banned_ids=banned)
        real = response_mask(out, tok.eos_token_id, tok.pad_token_id)
        kl = (response_logprobs(policy, ids, mask, out, real, 1.0, banned)
              - response_logprobs(reference, ids, mask, out, real, 1.0, banned)).sum(-1)
        texts = [tok.decode([t for t, m in zip(row, row_mask) if m and t != tok.eos_token_id], skip_special_tokens=True)
                 for row, row_mask in zip(out.tolist(), real.tolist())]
        scores.extend(scorer.score(chunk, texts, where="frontier evaluation").tolist())
        kls.extend(kl.tolist())
        lengths.extend(real.sum(-1).tolist())

    def mean_se(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))

    gold, gold_se = mean_se(scores)
    kl, kl_se = mean_se(kls)
    return {"gold": gold, "gold_se": gold_se, "kl": kl, "kl_se": kl_se, "length": sum(lengths) / len(lengths),
            "samples": len(scores), "prompts": len(prompts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="the policy's export directory")
    parser.add_argument("--reference", required=True, help="the SFT export every method started from")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (the same for every policy)")
    parser.add_argument("--cache-dir", default=os.environ.get("RLHF_CACHE_DIR", ".cache"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    prompts = held_out_prompts(args.prompts, args.cache_dir)
    result = evaluate(args.policy, args.reference, prompts, args.samples, args.max_new_tokens, args.seed)
    result.update(policy=args.policy, reference=args.reference, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as f:
        json.dump(result, f, indent=2)
    os.replace(f.name, out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
