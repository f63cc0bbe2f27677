"""Results table of experiments/pwp_tradeoff/run.sh: per objective, mean +- std over seeds of the misaligned-sample
rate (unconditional and prompted samples, scored by the run's scorer) and the held-out LM loss on untouched text."""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sweep = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/pwp_tradeoff/sweep")
KEYS = [("test/unconditional/misaligned_fraction", "misaligned (unconditional)"),
        ("test/prompted/misaligned_fraction", "misaligned (prompted)"),
        ("test/unconditional/misalignment_max@8", "misalignment max@8"),
        ("test/lm_loss", "held-out LM loss"), ("test/unconditional/distinct_2", "distinct-2")]
runs = defaultdict(list)
for metrics_file in sorted(sweep.glob("*_seed*/metrics.json")):
    objective = metrics_file.parent.name.rsplit("_seed", 1)[0]
    runs[objective].append(json.loads(metrics_file.read_text()))


def cell(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


print("| objective | seeds | " + " | ".join(label for _, label in KEYS) + " |")
print("|---|---:|" + "---:|" * len(KEYS))
order = ["mle", "filtering", "conditional", "conditional-noise1", "unlikelihood", "rwr", "awr"]
for objective in sorted(runs, key=lambda o: order.index(o) if o in order else len(order)):
    values = runs[objective]
    print(f"| {objective} | {len(values)} | " + " | ".join(cell([m[k] for m in values if k in m]) for k, _ in KEYS)
          + " |")
