"""Results table of experiments/reward_learning/run.sh: held-out accuracy against the noisy labels, the gold scorer's
own agreement with the same labels, and agreement of the reward model with the gold scorer."""

import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/reward_learning")
rows = {}
for run_dir in sorted(out.glob("rm_*_seed*")):
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        init, seed = run_dir.name[3:].rsplit("_seed", 1)
        rows.setdefault(init, []).append((int(seed), json.loads(metrics_file.read_text())))
print("| init | seed | test accuracy (noisy labels) | gold scorer vs labels | RM vs gold (gold ties excluded) | "
      "calibration error |")
print("|---|---:|---:|---:|---:|---:|")
for init, runs in rows.items():
    for seed, m in sorted(runs):
        print(f"| {init} | {seed} | {m['test/accuracy']:.3f} | {m['test/label_gold_agreement']:.3f} | "
              f"{m['test/gold_agreement']:.3f} | {m['test/calibration_error']:.3f} |")
    accs = [m["test/accuracy"] for _, m in runs]
    spread = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
    print(f"| {init} | mean | {statistics.mean(accs):.3f}{spread} | | | |")
