"""Table and plot of experiments/feedback_loop/run.sh: the held-out gold score (VADER) and KL to the SFT start after
each round of rlhf-loop, per seed; writes ``rounds.png`` next to this script.
    python experiments/feedback_loop/summarize.py [logs/experiments/feedback_loop]"""

import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/feedback_loop")
seeds = {}
for seed_dir in sorted(out.glob("seed*")):
    start = json.loads((seed_dir / "start.jsonl").read_text().splitlines()[0])
    rounds = [json.loads(line) for line in (seed_dir / "loop_summary.jsonl").read_text().splitlines()] \
        if (seed_dir / "loop_summary.jsonl").exists() else []
    seeds[seed_dir.name] = [{"round": "start", "labels_total": 0, "kl": 0.0, **start}, *rounds]

print("| seed | round | labels so far | held-out gold | KL to SFT |")
print("|---|---|---:|---:|---:|")
for seed, rows in seeds.items():
    for r in rows:
        print(f"| {seed} | {r['round']} | {r['labels_total']} | {r['gold']:.3f} ± {r['gold_se']:.3f} | {r['kl']:.1f} |")
complete = [rows for rows in seeds.values() if len(rows) == 4]
if complete:
    print("\n| round | mean gold over seeds | seeds where gold rose from the round before |")
    print("|---|---:|---:|")
    for i, name in enumerate(["start", "0", "1", "2"]):
        golds = [rows[i]["gold"] for rows in complete]
        rose = "" if i == 0 else f"{sum(rows[i]['gold'] > rows[i - 1]['gold'] for rows in complete)}/{len(complete)}"
        print(f"| {name} | {statistics.mean(golds):.3f} | {rose} |")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("(no plot: pip install -e '.[notebooks]' for matplotlib)")
fig, ax = plt.subplots(figsize=(6, 4))
for seed, rows in seeds.items():
    ax.errorbar(range(len(rows)), [r["gold"] for r in rows], yerr=[r["gold_se"] for r in rows], marker="o",
                capsize=2, label=seed)
ax.set_xticks(range(4), ["SFT", "round 0", "round 1", "round 2"])
ax.set_ylabel("held-out gold score (VADER, 128 samples)")
ax.set_title("rlhf-loop with a simulated annotator")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
figure = Path(__file__).resolve().parent / "rounds.png"
fig.savefig(figure, dpi=120)
print(f"\nsaved {figure}")
