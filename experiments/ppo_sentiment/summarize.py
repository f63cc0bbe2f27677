"""Results table of experiments/ppo_sentiment/run.sh: gold score (VADER) and KL on the test prompts, before PPO and
after it, per reward and seed."""

import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/ppo_sentiment")


def metrics(name: str) -> dict | None:
    path = out / name / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


print("| reward | seed | gold before | gold after | gain | proxy before | proxy after | KL after (nats/response) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
seeds = sorted(int(p.name.rsplit("seed", 1)[1]) for p in out.glob("before_seed*"))
for reward in ("vader", "rm"):
    gains = []
    for seed in seeds:
        before, after = metrics(f"before_seed{seed}"), metrics(f"ppo_{reward}_seed{seed}")
        if not before or not after:
            continue
        gain = after["test/gold"] - before["test/gold"]
        gains.append(gain)
        proxy_before = before["test/gold"] if reward == "vader" else before["test/reward"]
        print(f"| {reward} | {seed} | {before['test/gold']:+.3f} | {after['test/gold']:+.3f} | {gain:+.3f} | "
              f"{proxy_before:+.3f} | {after['test/reward']:+.3f} | {after['test/kl']:.2f} |")
    if gains:
        spread = f" ± {statistics.stdev(gains):.3f}" if len(gains) > 1 else ""
        print(f"| {reward} | mean | | | {statistics.mean(gains):+.3f}{spread} | | | |")
