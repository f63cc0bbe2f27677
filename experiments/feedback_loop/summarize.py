"""Table and plot of experiments/feedback_loop/run.sh: the held-out gold score (VADER) and KL to the SFT start after
each round of rlhf-loop, per run.sh output directory (``start``, ``previous``: the first experiment's two ways of
training; ``start_512x3ep``: the default run.sh) and seed; writes ``rounds.png`` next to this script.
    python experiments/feedback_loop/summarize.py [logs/experiments/feedback_loop]"""

import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/feedback_loop")
runs = {}  # (train_from, seed) -> rows: start, then rounds
for seed_dir in sorted(out.glob("*/seed*")):
    if not (seed_dir / "start.jsonl").exists():
        continue
    start = json.loads((seed_dir / "start.jsonl").read_text().splitlines()[0])
    rounds = [json.loads(line) for line in (seed_dir / "loop_summary.jsonl").read_text().splitlines()] \
        if (seed_dir / "loop_summary.jsonl").exists() else []
    runs[(seed_dir.parent.name, seed_dir.name)] = [{"round": "start", "labels_total": 0, "kl": 0.0, **start}, *rounds]

print("| train from | seed | round | labels so far | held-out gold | KL to SFT |")
print("|---|---|---|---:|---:|---:|")
for (train_from, seed), rows in runs.items():
    for r in rows:
        print(f"| {train_from} | {seed} | {r['round']} | {r['labels_total']} | {r['gold']:.3f} ± {r['gold_se']:.3f} | "
              f"{r['kl']:.1f} |")
print("\n| train from | round | seeds | mean gold | seeds where gold rose from the round before |")
print("|---|---|---:|---:|---:|")
for train_from in sorted({key[0] for key in runs}):
    complete = [rows for key, rows in runs.items() if key[0] == train_from and len(rows) == 4]
    for i, name in enumerate(["start", "0", "1", "2"] if complete else []):
        golds = [rows[i]["gold"] for rows in complete]
        rose = "" if i == 0 else f"{sum(rows[i]['gold'] > rows[i - 1]['gold'] for rows in complete)}/{len(complete)}"
        print(f"| {train_from} | {name} | {len(complete)} | {statistics.mean(golds):.3f} | {rose} |")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("(no plot: pip install -e '.[notebooks]' for matplotlib)")
TITLES = {"previous": "128 pairs/round, 40 steps, --train-from previous",
          "start": "128 pairs/round, 40 steps, --train-from start",
          "start_512x3ep": "512 pairs/round, 3 epochs, --train-from start"}
modes = sorted({key[0] for key in runs})
fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), sharey=True, squeeze=False)
for ax, train_from in zip(axes[0], modes):
    for (mode, seed), rows in runs.items():
        if mode == train_from:
            ax.errorbar(range(len(rows)), [r["gold"] for r in rows], yerr=[r["gold_se"] for r in rows], marker="o",
                        capsize=2, label=seed)
    ax.set_xticks(range(4), ["SFT", "round 0", "round 1", "round 2"])
    ax.set_title(TITLES.get(train_from, train_from))
    ax.grid(alpha=0.3)
    ax.legend()
axes[0][0].set_ylabel("held-out gold score (VADER)")
fig.suptitle("rlhf-loop with a simulated annotator")
fig.tight_layout()
figure = Path(__file__).resolve().parent / "rounds.png"
fig.savefig(figure, dpi=120)
print(f"\nsaved {figure}")
