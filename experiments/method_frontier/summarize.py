"""Table and plot of experiments/method_frontier/run.sh: per method and seed, the held-out gold score (VADER) of the
policy's samples, its gain over the shared SFT start, and the KL of the samples to that start (evaluate.py's
``frontier.json`` in each run dir); writes ``frontier.png`` next to this script (gold against KL, one point per
seed).   python experiments/method_frontier/summarize.py [logs/experiments/method_frontier]"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/method_frontier")
GOAL = 0.3
ORDER = ["dpo_sigmoid", "dpo_ipo", "dpo_hinge", "dpo_robust", "kto_lr1e-3", "kto_lr1e-4", "kto_balanced_lr1e-4", "ppo", "grpo"]
start = json.loads((out / "sft" / "frontier.json").read_text())
runs = defaultdict(dict)
for path in sorted(out.glob("*_seed*/frontier.json")):
    name, seed = path.parent.name.rsplit("_seed", 1)
    result = json.loads(path.read_text())
    metrics_file = path.parent / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    result["reward_accuracy"] = metrics.get("test/rewards/accuracy")  # DPO's held-out implicit-reward accuracy
    runs[name][int(seed)] = result

print(f"SFT start: gold {start['gold']:.3f} ± {start['gold_se']:.3f} (s.e., {start['samples']} samples)\n")
print("| method | seed | gold | gain | KL to SFT | DPO held-out reward acc. |")
print("|---|---:|---:|---:|---:|---:|")
for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
    for seed, r in sorted(runs[name].items()):
        acc = f"{r['reward_accuracy']:.3f}" if r["reward_accuracy"] is not None else ""
        print(f"| {name} | {seed} | {r['gold']:.3f} ± {r['gold_se']:.3f} | {r['gold'] - start['gold']:+.3f} | "
              f"{r['kl']:.1f} ± {r['kl_se']:.1f} | {acc} |")
print("\n| method | seeds | mean gain | seeds with gain >= +0.3 | mean KL |")
print("|---|---:|---:|---:|---:|")
for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
    gains = [r["gold"] - start["gold"] for r in runs[name].values()]
    kls = [r["kl"] for r in runs[name].values()]
    print(f"| {name} | {len(gains)} | {statistics.mean(gains):+.3f} | {sum(g >= GOAL for g in gains)}/{len(gains)} | "
          f"{statistics.mean(kls):.1f} |")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("(no plot: pip install -e '.[notebooks]' for matplotlib)")
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.errorbar([0], [start["gold"]], yerr=[start["gold_se"]], fmt="*", color="black", markersize=12, label="SFT start")
for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
    values = list(runs[name].values())
    ax.errorbar([r["kl"] for r in values], [r["gold"] for r in values], xerr=[r["kl_se"] for r in values],
                yerr=[r["gold_se"] for r in values], fmt="o", capsize=2, label=name)
ax.axhline(start["gold"] + GOAL, color="grey", linestyle="--", linewidth=0.8, label="SFT + 0.3 (goal)")
ax.set_xlabel("KL(policy || SFT) of the samples (nats per sequence)")
ax.set_ylabel("held-out gold score (VADER, mean of 256 samples)")
ax.set_title("Gold vs KL from one SFT policy (one point per seed)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="best")
fig.tight_layout()
figure = Path(__file__).resolve().parent / "frontier.png"
fig.savefig(figure, dpi=120)
print(f"\nsaved {figure}")
