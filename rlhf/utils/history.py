"""``HistoryLogger`` (``logger.history``, on in every logger option): every logged metric, one JSON line per logging
call, in ``<run>/metrics_history.jsonl``, whatever other logger the run uses (W&B keeps its history in a binary
offline file). The analysis notebooks read it (``rlhf.utils.analysis.load_history``). A resumed run appends; a
reader takes the last value logged at a step."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

HISTORY_FILE = "metrics_history.jsonl"


class HistoryLogger(Logger):
    def __init__(self, save_dir: str):
        super().__init__()
        self._path = Path(save_dir) / HISTORY_FILE

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is in ``config_resolved.yaml`` already."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else str(value)  # JSON has no NaN/inf
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
