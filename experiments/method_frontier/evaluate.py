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
import os
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from rlhf.sample import gold_and_kl
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
    result = gold_and_kl(args.policy, args.reference, prompts, args.samples, args.max_new_tokens, args.seed)
    result.update(policy=args.policy, reference=args.reference, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as f:
        json.dump(result, f, indent=2)
    os.replace(f.name, out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
