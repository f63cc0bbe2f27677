"""Every run writes ``metrics_history.jsonl`` whatever its loggers; ``load_history`` (the notebooks' reader) gives the
same curves from it as from the CSV log."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rlhf.train import run
from rlhf.utils.analysis import load_history


def _csv_history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    rows = csv.DictReader(open(next(run_dir.glob("csv/version_*/metrics.csv")), newline=""))
    return sorted((int(float(r["step"])), float(r[key])) for r in rows if r.get(key))


def test_the_history_file_matches_the_csv_log_and_needs_no_logger(make_cfg):
    cfg = make_cfg("trainer.max_steps=6", "trainer.val_check_interval=3")  # logger=csv (FAST) + the history
    run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    history = load_history(run_dir)
    for key in ("train/loss", "val/loss"):
        expected = _csv_history(run_dir, key)
        assert [s for s, _ in history[key]] == [s for s, _ in expected] and len(expected) >= 2, key
        assert [v for _, v in history[key]] == pytest.approx([v for _, v in expected], rel=1e-6), key

    quiet = make_cfg("trainer.max_steps=6", "trainer.val_check_interval=3", "logger=none", subdir="quiet")
    run(quiet)
    quiet_dir = Path(quiet.paths.output_dir)
    assert not (quiet_dir / "csv").exists() and not (quiet_dir / "wandb").exists()
    quiet_val = load_history(quiet_dir)["val/loss"]
    assert [v for _, v in quiet_val] == pytest.approx([v for _, v in history["val/loss"]])  # same seed, same curve
