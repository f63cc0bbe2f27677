"""The table of experiments/dpo_learns: per seed, the held-out VADER score of samples before -> after DPO, and the
implicit-reward accuracy and margin on held-out pairs. (The KL of the samples to the reference is not measured yet:
issue 17 keeps it open.)"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

out = Path(os.environ.get("OUT", "logs/experiments/dpo_learns"))
rows = []
for run in sorted(r for r in out.glob("dpo_seed*") if (r / "metrics.json").exists()):  # finished runs
    m = json.loads((run / "metrics.json").read_text())
    before, after = m["start/test/prompted/score"], m["test/prompted/score"]
    rows.append((run.name, before, after, after - before, m["test/rewards/accuracy"], m["test/rewards/margin"]))
print(f"{'run':<12}{'gold before':>12}{'gold after':>12}{'gain':>8}{'reward acc':>12}{'margin':>9}")
for name, before, after, gain, acc, margin in rows:
    print(f"{name:<12}{before:>12.3f}{after:>12.3f}{gain:>+8.3f}{acc:>12.3f}{margin:>9.3f}")
gains = [r[3] for r in rows]
if gains:
    print(f"mean gain {statistics.mean(gains):+.3f}; seeds with gain >= +0.3: {sum(g >= 0.3 for g in gains)}/{len(gains)}")
