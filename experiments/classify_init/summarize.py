"""Table of experiments/classify_init/run.sh: held-out (test split) accuracy and macro-F1 of BBC topic
classification per initialisation, per seed and mean ± std.   python experiments/classify_init/summarize.py [OUT]"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "logs/experiments/classify_init")
ORDER = ["random", "mlm", "mlm_lr3e-4", "minilm"]
runs = defaultdict(dict)
for path in sorted(out.glob("*_seed*/metrics.json")):
    name, seed = path.parent.name.rsplit("_seed", 1)
    runs[name][int(seed)] = json.loads(path.read_text())


def cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


print("| initialisation | seeds | test accuracy (per seed) | mean | test macro-F1 (per seed) | mean |")
print("|---|---:|---|---:|---|---:|")
for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
    acc = [m["test/accuracy"] for _, m in sorted(runs[name].items())]
    f1 = [m["test/macro_f1"] for _, m in sorted(runs[name].items())]
    print(f"| {name} | {len(acc)} | {', '.join(f'{a:.3f}' for a in acc)} | {cell(acc)} | "
          f"{', '.join(f'{f:.3f}' for f in f1)} | {cell(f1)} |")
