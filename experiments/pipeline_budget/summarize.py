"""The table of experiments/pipeline_budget/run.sh: one row per arm with the metrics that decide the main job's
settings and the wall time of each run (from its csv log's first and last rows is not enough: the run's own
train.log start/end is used)."""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/pipeline_budget")


def seconds(run: Path) -> float | None:
    """Wall time of a run: from its resolved config (written at start) to its metrics.json (written at the end)."""
    start, end = run / "config_resolved.yaml", run / "metrics.json"
    return end.stat().st_mtime - start.stat().st_mtime if start.exists() and end.exists() else None


def fmt(value, digits=3):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


print("| reward arm | train pairs | steps | test accuracy | labels' gold ceiling | gold agreement | test loss | time (s) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for run in sorted(out.glob("rm_*")):
    m = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    print(f"| {run.name} | {m.get('data/train_samples', 0):.0f} | {m.get('trainer/global_step', 0):.0f} | "
          f"{fmt(m.get('test/accuracy'))} | {fmt(m.get('test/label_gold_agreement'))} | "
          f"{fmt(m.get('test/gold_agreement'))} | {fmt(m.get('test/loss'))} | {fmt(seconds(run), 0)} |")
print()
print("| PPO arm | gold before | gold after | gain | reward before | reward after | KL (nats/response) | time (s) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for run in sorted(out.glob("ppo_*")):
    m = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    before, after = m.get("start/test/gold"), m.get("test/gold")
    gain = after - before if isinstance(before, float) and isinstance(after, float) else None
    print(f"| {run.name} | {fmt(before)} | {fmt(after)} | {fmt(gain)} | {fmt(m.get('start/test/reward'))} | "
          f"{fmt(m.get('test/reward'))} | {fmt(m.get('test/kl'), 2)} | {fmt(seconds(run), 0)} |")
