"""Simulated human feedback from the shipped text, labelled by a gold scorer with Bradley–Terry noise.

Each BBC article gives a prompt (its headline) and responses (its sentences). A pair of responses to the same prompt
is labelled by a draw ``P(a preferred to b) = sigmoid((gold(a) - gold(b)) / temperature)``, so labels disagree
where a human would (near-ties are coin flips, clear differences almost never flip). Ratings are 1-5: the gold score
plus Gaussian noise of ``temperature`` (on the scorer's scale), cut into five equal bins over the scorer's range.
Articles are assigned to train/val/test by a hash of their id, so no text is shared across splits.

    rlhf-make-feedback --out data/feedback                # pairs_{train,val,test}.jsonl, ratings_{...}.jsonl
    rlhf-make-feedback --scorer offensive --temperature 0.05 --out data/offensive
"""

from __future__ import annotations

import argparse
import math
import random
import re
from pathlib import Path

from rlhf.data.corpora import bbc_news
from rlhf.data.documents import split_of
from rlhf.data.readers import write_jsonl
from rlhf.scoring.gold import gold_scorer
from rlhf.utils.progress import progress

SCORER_RANGE = {"vader": (-1.0, 1.0), "offensive": (0.0, 1.0)}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def sentences(text: str, min_words: int = 6, max_words: int = 40) -> list[str]:
    body = text.split("\n", 1)[1] if "\n" in text else text
    out = []
    for paragraph in body.split("\n"):
        for sentence in _SENTENCE.split(paragraph.strip()):
            n = len(sentence.split())
            if min_words <= n <= max_words:
                out.append(sentence.strip())
    return out


def bradley_terry_choice(score_a: float, score_b: float, temperature: float, rng: random.Random) -> bool:
    """A simulated annotator's comparison: True (a preferred) with probability sigmoid((g(a) - g(b)) / T)."""
    z = max(-50.0, min(50.0, (score_a - score_b) / temperature))  # sigmoid without overflow
    return rng.random() < 1.0 / (1.0 + math.exp(-z))


def make_feedback(scorer: str = "vader", temperature: float = 0.1, pairs_per_article: int = 4,
                  max_articles: int | None = None, seed: int = 0, val_fraction: float = 0.1,
                  test_fraction: float = 0.1) -> dict[str, dict[str, list[dict]]]:
    """``{"pairs": {split: records}, "ratings": {split: records}}``; every record carries its gold scores."""
    rng = random.Random(seed)
    gold = gold_scorer(scorer)
    low, high = SCORER_RANGE[scorer]
    out: dict[str, dict[str, list[dict]]] = {"pairs": {}, "ratings": {}}
    for kind in out:
        out[kind] = {"train": [], "val": [], "test": []}
    articles = bbc_news()[:max_articles] if max_articles else bbc_news()
    for article in progress(articles, f"simulated feedback ({scorer})", unit="article"):
        candidates = sentences(article["text"])
        if len(candidates) < 2:
            continue
        split = split_of(article["id"], f"feedback-{seed}", val_fraction, test_fraction)
        scores = gold.score([""] * len(candidates), candidates).tolist()
        prompt = article["title"]
        for _ in range(pairs_per_article):
            i, j = rng.sample(range(len(candidates)), 2)
            chosen, rejected = (i, j) if bradley_terry_choice(scores[i], scores[j], temperature, rng) else (j, i)
            out["pairs"][split].append({
                "prompt": prompt, "chosen": candidates[chosen], "rejected": candidates[rejected],
                "gold_chosen": scores[chosen], "gold_rejected": scores[rejected], "article": article["id"]})
        for k in rng.sample(range(len(candidates)), min(pairs_per_article, len(candidates))):
            noisy = scores[k] + rng.gauss(0.0, temperature)
            rating = 1 + min(4, max(0, int((noisy - low) / (high - low) * 5)))
            out["ratings"][split].append({"prompt": prompt, "response": candidates[k], "rating": float(rating),
                                          "gold": scores[k], "article": article["id"]})
    return out


def write_feedback(out_dir: str | Path, **kwargs) -> dict[str, int]:
    data = make_feedback(**kwargs)
    counts = {}
    for kind, splits in data.items():
        for split, records in splits.items():
            write_jsonl(Path(out_dir) / f"{kind}_{split}.jsonl", records)
            counts[f"{kind}_{split}"] = len(records)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--scorer", default="vader", choices=sorted(SCORER_RANGE))
    parser.add_argument("--temperature", type=float, default=0.1, help="Bradley-Terry noise (scorer units)")
    parser.add_argument("--pairs-per-article", type=int, default=4)
    parser.add_argument("--max-articles", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.temperature <= 0:
        parser.error("--temperature must be > 0")
    counts = write_feedback(args.out, scorer=args.scorer, temperature=args.temperature,
                            pairs_per_article=args.pairs_per_article, max_articles=args.max_articles, seed=args.seed)
    for name, n in counts.items():
        print(f"{Path(args.out) / (name + '.jsonl')}: {n} records")


if __name__ == "__main__":
    main()
