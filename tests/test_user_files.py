"""A new user's own feedback files through the real entry point: plain pairs and ratings as ``rlhf-label`` writes them
(no gold column), with optional columns (gold, margin) absent, present or partly present, and ratings off the scale.
Training, validation, test and export must all run; metrics that need gold appear only where gold exists."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.errors import DataError
from rlhf.train import run

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
        "model.tokenizer.vocab_size=256", "data.loader.batch_size=8", "data.split.val_fraction=0.2",
        "data.split.test_fraction=0.2", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1", "callbacks.progress_bar=null", "logger=csv"]
GOOD, BAD = ["wonderful", "lovely", "great", "happy"], ["awful", "terrible", "sad", "grim"]


def _pairs(n: int = 80, gold=None, margin=None) -> list[dict]:
    """What rlhf-label writes (prompt/chosen/rejected + id/labeler/time); ``gold``/``margin``: 'all', 'some' or None."""
    rows = []
    for i in range(n):
        row = {"prompt": f"Say something about day {i}", "chosen": f"a {GOOD[i % 4]} day, number {i}",
               "rejected": f"an {BAD[i % 4]} day, number {i}", "id": f"row{i}", "labeler": "ana",
               "time": "2026-11-30T10:00:00"}
        if gold == "all" or (gold == "some" and i % 3 == 0):
            row.update(gold_chosen=0.5, gold_rejected=-0.5 if i % 5 else 0.5)
        if margin == "all" or (margin == "some" and i % 2 == 0):
            row["margin"] = 0.25
        rows.append(row)
    return rows


def _ratings(n: int = 80, gold=None) -> list[dict]:
    rows = []
    for i in range(n):
        rating = 1 + i % 3
        row = {"prompt": f"Say something about day {i}", "response": f"{(GOOD if rating > 1 else BAD)[i % 4]} {i}",
               "rating": rating, "id": f"row{i}", "labeler": "ana"}
        if gold == "all" or (gold == "some" and i % 2 == 0):
            row["gold"] = rating / 3
        rows.append(row)
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_real_command_trains_a_reward_model_on_a_labelled_file_without_gold(tmp_path):
    """label with rlhf-label -> rlhf-train on that file: used to crash at the first validation (no gold column)."""
    prefs = _write(tmp_path / "prefs.jsonl", _pairs())
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rlhf.train", "experiment=reward_tiny", "data=feedback_file",
                          f"data.source.path={prefs}", *TINY, f"hydra.run.dir={tmp_path / 'run'}",
                          f"paths.cache_dir={tmp_path / 'cache'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and "val/loss" in metrics
    assert not any("gold" in key for key in metrics)  # nothing to compare against, nothing invented
    # one file split by prompt hash: every split's kept count is reported, and they add up to the file's
    kept = [metrics[f"data/{s}/kept"] for s in ("train", "val", "test")]
    assert all(k > 0 for k in kept) and sum(kept) == metrics["data/kept"] == 80
    assert kept[0] == metrics["data/train_samples"]
    assert (tmp_path / "run" / "export" / "config.json").exists()


@pytest.mark.parametrize(("gold", "margin"), [("some", "some"), ("all", None), (None, "all")])
def test_pairs_with_optional_columns_absent_present_or_partial(make_cfg, tmp_path, gold, margin):
    prefs = _write(tmp_path / "prefs.jsonl", _pairs(gold=gold, margin=margin))
    metrics = run(make_cfg("experiment=reward_tiny", "data=feedback_file", f"data.source.path={prefs}", *TINY,
                           fast=False))
    assert "test/accuracy" in metrics
    if gold is None:
        assert "test/gold_agreement" not in metrics and "test/gold_coverage" not in metrics
    else:  # gold metrics over the rows that have gold, and the share of rows they cover
        assert 0.0 <= metrics["test/gold_agreement"] <= 1.0
        coverage = metrics["test/gold_coverage"]
        assert (coverage == 1.0) if gold == "all" else (0.0 < coverage < 1.0)


@pytest.mark.parametrize("gold", [None, "some"])
def test_ratings_with_gold_absent_or_partial(make_cfg, tmp_path, gold):
    ratings = _write(tmp_path / "ratings.jsonl", _ratings(gold=gold))
    metrics = run(make_cfg("experiment=reward_tiny", "method.objective=rating", "data=feedback_file",
                           f"data.source.path={ratings}", "data.rating_range=[1,3]", *TINY, fast=False))
    assert "test/spearman" in metrics and "test/mse" in metrics
    assert ("test/gold_spearman" in metrics) == (gold is not None)
    if gold:
        assert 0.0 < metrics["test/gold_coverage"] < 1.0


def test_a_rating_that_overflows_the_scale_is_an_error_not_zero_targets(make_cfg, tmp_path):
    rows = _ratings()
    rows[5]["rating"] = 1e308  # finite, but its square is not: the std was inf and every target 0, exit 0
    ratings = _write(tmp_path / "ratings.jsonl", rows)
    cfg = make_cfg("experiment=reward_tiny", "method.objective=rating", "data=feedback_file",
                   f"data.source.path={ratings}", *TINY, fast=False)
    with pytest.raises(DataError, match=r"ratings.jsonl: the training ratings cannot be normalised.*1e\+308.*"
                                        r"data.rating_range"):
        run(cfg)


def test_a_rating_off_the_declared_scale_names_the_row(make_cfg, tmp_path):
    rows = _ratings()
    rows[5]["rating"] = 7
    ratings = _write(tmp_path / "ratings.jsonl", rows)
    base = ["experiment=reward_tiny", "method.objective=rating", "data=feedback_file", f"data.source.path={ratings}",
            "data.rating_range=[1,3]", *TINY]
    with pytest.raises(DataError, match=r"ratings.jsonl, row 6: rating 7 is outside data.rating_range=\[1, 3\]"):
        run(make_cfg(*base, fast=False))
    metrics = run(make_cfg(*base, "data.policy.out_of_range=drop", fast=False, subdir="drop"))
    assert metrics["data/dropped_out_of_range"] == 1.0


def test_an_empty_split_names_the_file_and_the_fix(make_cfg, tmp_path):
    prefs = _write(tmp_path / "prefs.jsonl", _pairs(n=3))
    cfg = make_cfg("experiment=reward_tiny", "data=feedback_file", f"data.source.path={prefs}", *TINY,
                   "data.split.val_fraction=0.01", "data.split.test_fraction=0.01", fast=False)
    with pytest.raises(DataError, match=r"split of the pairs data is empty after validation: .*prefs.jsonl.*"
                                        r"data.split.(val|test)_fraction"):
        run(cfg)


# ---- scorers a user plugs in: checked at the boundary ---------------------------------------------------------------
@pytest.mark.parametrize(("target", "message"), [
    ("tests.scorers_for_tests.raises", r"scorer method.reward \(kind=callable, tests.scorers_for_tests.raises\): "
                                       r"raises raised KeyError: 'sentiment' on the text 'a b c' "
                                       r"\(PPO train at step 3\)"),
    ("tests.scorers_for_tests.nan_for_long", r"returned nan for text 0 \('a b c', prompt 'p0'\) \(PPO train at step 3\); "
                                             r"1 of 2 values are not finite"),
    ("tests.scorers_for_tests.ReturnsText", r"returned str, not a tensor or list of numbers \(PPO train at step 3\)"),
    ("tests.scorers_for_tests.ReturnsTooFew", r"returned 1 values \(shape \(1,\)\) for 2 texts \(PPO train at step 3\)"),
])
def test_a_misbehaving_scorer_is_named_with_the_step_and_the_text(target, message):
    from rlhf.errors import ScorerError
    from rlhf.scoring.build import build_scorer

    scorer = build_scorer({"kind": "callable", "target": target, "completion_only": True})
    with pytest.raises(ScorerError, match=message):
        scorer.score(["p0", "p1"], ["a b c", "x"], where="PPO train at step 3")
    listed = build_scorer({"kind": "callable", "target": "tests.scorers_for_tests.ReturnsList"})
    assert listed.score(["", ""], ["ab", "abc"]).tolist() == [2.0, 3.0]  # a list of numbers is fine


def test_ppo_with_a_reward_that_returns_nan_stops_at_the_scorer_not_at_a_gradient(make_cfg):
    from rlhf.errors import ScorerError

    cfg = make_cfg("experiment=ppo_tiny", "method.reward.kind=callable",
                   "method.reward.target=tests.scorers_for_tests.nan_for_long", "data.source.max_documents=40",
                   "data.loader.batch_size=4", "method.max_new_tokens=6", "method.num_minibatches=2",
                   "trainer.max_steps=2", "trainer.val_check_interval=2", "logger=csv", "callbacks.progress_bar=null",
                   fast=False)
    with pytest.raises(ScorerError, match=r"scorer method.reward \(kind=callable, tests.scorers_for_tests.nan_for_long\)"
                                          r" returned nan for text .* \(PPO (train|val) at step 0\)"):
        run(cfg)
