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
print("| init | seed | test accuracy (noisy labels) | test loss | gold scorer vs labels | RM vs gold (gold ties excluded) | "
      "calibration error | selected step |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for init, runs in rows.items():
    for seed, m in sorted(runs):
        best = m.get("trainer/best_step")
        print(f"| {init} | {seed} | {m['test/accuracy']:.3f} | {m['test/loss']:.3f} | {m['test/label_gold_agreement']:.3f} | "
              f"{m['test/gold_agreement']:.3f} | {m['test/calibration_error']:.3f} | "
              f"{'last' if best is None else int(best)} |")
    cells = []
    for key in ("test/accuracy", "test/loss", "test/gold_agreement"):
        values = [m[key] for _, m in runs]
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        cells.append(f"{statistics.mean(values):.3f}{spread}")
    print(f"| {init} | mean | {cells[0]} | {cells[1]} | | {cells[2]} | | |")
