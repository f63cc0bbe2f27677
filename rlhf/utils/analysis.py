"""Read run directories for analysis (the notebooks in ``notebooks/``): find runs, load their config, final metrics
and metric histories, from the run dir's ``metrics_history.jsonl`` (every run writes it) or, when online, from W&B.

    runs = find_runs("logs/pipeline", method="ppo")
    history = load_history(runs[0])            # {"train/reward": [(step, value), ...], ...}
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlhf.utils.history import HISTORY_FILE


def run_config(run_dir: str | Path) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(Path(run_dir) / "config_resolved.yaml"))


def method_of(run_dir: str | Path) -> str:
    target = run_config(run_dir)["method"]["_target_"]
    from rlhf.config.registry import METHOD_OF_MODULE

    return METHOD_OF_MODULE.get(target.rsplit(".", 1)[-1], target)


def find_runs(root: str | Path, method: str | None = None) -> list[Path]:
    """Run directories under ``root`` (those with ``config_resolved.yaml`` and ``metrics.json``), optionally of one
    method (``mlm``, ``reward``, ``ppo``, ``pwp``), sorted by path."""
    root = Path(root)
    runs = sorted({p.parent for p in root.glob("**/config_resolved.yaml") if (p.parent / "metrics.json").exists()})
    return [r for r in runs if method is None or method_of(r) == method]


def final_metrics(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def load_history(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged metric of a run as ``{key: [(step, value), ...]}`` sorted by step, from
    ``<run>/metrics_history.jsonl`` (every run writes it, whatever its loggers), else from ``<run>/csv/version_*/
    metrics.csv`` (runs made before it existed). A resumed run appends (or writes a new CSV version): the last value
    logged at a step wins."""
    values: dict[str, dict[int, float]] = defaultdict(dict)
    jsonl = Path(run_dir) / HISTORY_FILE
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            row = json.loads(line)
            step = int(row.pop("step") or 0)
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    values[key][step] = float(value)
        return {key: sorted(points.items()) for key, points in values.items()}
    files = sorted(Path(run_dir).glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"{run_dir}: neither {HISTORY_FILE} nor csv/version_*/metrics.csv (was logger.history "
                                f"set to null?); read W&B with wandb_history()")
    for path in files:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(float(row.get("step") or 0))
                for key, text in row.items():
                    if key in ("step", "epoch") or text in ("", None):
                        continue
                    number = float(text)
                    if math.isfinite(number):
                        values[key][step] = number
    return {key: sorted(points.items()) for key, points in values.items()}


def wandb_history(run_path: str, keys: list[str] | None = None) -> dict[str, list[tuple[int, float]]]:
    """The same structure from a W&B run (``entity/project/run_id``); needs network access and ``wandb login``."""
    import wandb

    run = wandb.Api().run(run_path)
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in run.scan_history(keys=keys):
        step = row.get("trainer/global_step", row.get("_step"))
        for key, value in row.items():
            if key.startswith("_") or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            out[key].append((int(step), float(value)))
    return dict(out)


def xy(history: dict[str, list[tuple[int, float]]], key: str) -> tuple[list[int], list[float]]:
    points = history.get(key, [])
    return [s for s, _ in points], [v for _, v in points]
