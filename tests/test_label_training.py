"""Training on every kind of feedback rlhf-label collects, through the real commands: rankings -> a reward model or
DPO over all implied pairs; corrections -> SFT on the improved responses (optionally with the critique in the
context) and pairs (improved > original); ratings on the 1-3 scale -> a rating reward model or KTO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.data.feedback import HINDSIGHT, corrections_as_demonstrations, implied_pairs
from rlhf.data.readers import DropReport
from rlhf.train import run

GOOD = ["lovely", "great", "happy", "wonderful"]
BAD = ["awful", "terrible", "sad", "horrible"]
TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
        "model.tokenizer.vocab_size=400", "data.loader.batch_size=8", "trainer.max_steps=4",
        "trainer.val_check_interval=4", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "trainer.enable_model_summary=false", "callbacks.progress_bar=null", "logger=csv", "method.warmup_steps=1",
        "data.split.val_fraction=0.2", "data.split.test_fraction=0.2"]


def _label(tmp_path: Path, mode: str, items: list[dict], keys: str, *extra: str) -> Path:
    """The real rlhf-label, answering every item with the piped keys; returns its output file."""
    source = tmp_path / f"{mode}_candidates.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in items))
    output = tmp_path / f"{mode}_labels.jsonl"
    done = subprocess.run([sys.executable, "-m", "rlhf.label", "--mode", mode, "--input", str(source), "--output",
                           str(output), "--annotator", "ana", *extra], input=keys, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return output


def test_implied_pairs_and_corrections_by_hand():
    rows = [(1, {"prompt": "p", "responses": ["best", "mid", "worst"], "ranking": [2, 0, 1]}),
            (2, {"prompt": "q", "response": "draft", "critique": "dull", "correction": "better"}),
            (3, {"prompt": "r", "response": "draft", "critique": "dull", "correction": None}),
            (4, {"prompt": "s", "chosen": "c", "rejected": "d"})]
    report = DropReport("x")
    pairs = [(row, r["chosen"], r["rejected"]) for row, r in implied_pairs(rows, report)]
    assert pairs == [(1, "best", "mid"), (1, "best", "worst"), (1, "mid", "worst"), (2, "better", "draft"),
                     (4, "c", "d")]
    assert report.dropped["no_correction"] == 1
    report = DropReport("x")
    demos = [r for _, r in corrections_as_demonstrations(rows[1:3], report, hindsight=True)]
    assert demos == [{"prompt": HINDSIGHT.format(prompt="q", response="draft", critique="dull"),
                      "response": "better"}]
    assert demos[0]["prompt"] == "q\nA worse answer: draft\nWhat is wrong with it: dull\nA better answer:"
    assert report.dropped["no_correction"] == 1


def test_rankings_train_a_reward_model_through_the_real_command(tmp_path):
    items = [{"prompt": f"day {i}", "responses": [f"a {BAD[i % 4]} day", f"a {GOOD[i % 4]} day", f"an ok day {i}"]}
             for i in range(40)]
    labels = _label(tmp_path, "rank", items, "231\n" * 40)  # good, ok, bad
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rlhf.train", "experiment=reward_tiny", "data=feedback_file",
                          f"data.source.path={labels}", *TINY, f"hydra.run.dir={tmp_path / 'run'}",
                          f"paths.cache_dir={tmp_path / 'cache'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data/kept"] == 40 * 3  # every ranking of 3 gives its 3 implied pairs
    assert 0.0 <= metrics["test/accuracy"] <= 1.0


def test_rankings_train_dpo(make_cfg, tmp_path):
    items = [{"prompt": f"day {i}", "responses": [f"a {BAD[i % 4]} day", f"a {GOOD[i % 4]} day"]}
             for i in range(40)]
    labels = _label(tmp_path, "rank", items, "21\n" * 40)
    metrics = run(make_cfg("experiment=dpo_tiny", "data.source.kind=file", f"data.source.path={labels}", *TINY,
                           "method.evaluation.enabled=false", fast=False))
    assert metrics["data/kept"] == 40 and "test/rewards/accuracy" in metrics


@pytest.mark.parametrize("hindsight", [False, True])
def test_corrections_train_sft_on_the_improved_responses(make_cfg, tmp_path, hindsight):
    items = [{"prompt": f"day {i}", "response": f"a {BAD[i % 4]} day"} for i in range(40)]
    keys = "".join(f"too {BAD[i % 4]}\n" + (f"a {GOOD[i % 4]} day {i}\n" if i % 10 else "\n") for i in range(40))
    labels = _label(tmp_path, "correct", items, keys)
    cfg = make_cfg("experiment=sft_tiny", "data.source.kind=file", f"data.source.path={labels}", *TINY,
                   f"data.hindsight={str(hindsight).lower()}", fast=False)
    metrics = run(cfg)
    assert metrics["data/kept"] == 36 and metrics["data/dropped_no_correction"] == 4  # 4 critiques without a fix
    from rlhf.train import build_data_and_module

    datamodule, _ = build_data_and_module(cfg, tmp_path / "tok")
    datamodule.setup("fit")
    record = datamodule.splits["train"][0]
    assert record["response"].startswith("a ") and record["response"].split()[1] in GOOD
    assert ("A worse answer: a " in record["prompt"]) == hindsight


def test_corrections_are_pairs_for_a_reward_model(make_cfg, tmp_path):
    items = [{"prompt": f"day {i}", "response": f"a {BAD[i % 4]} day"} for i in range(40)]
    keys = "".join(f"too {BAD[i % 4]}\na {GOOD[i % 4]} day {i}\n" for i in range(40))
    labels = _label(tmp_path, "correct", items, keys)
    metrics = run(make_cfg("experiment=reward_tiny", "data=feedback_file", f"data.source.path={labels}", *TINY,
                           fast=False))
    assert metrics["data/kept"] == 40 and "test/accuracy" in metrics


def test_ratings_on_the_1_to_3_scale_train_a_rating_model_and_kto(make_cfg, tmp_path):
    items = [{"prompt": f"day {i}", "response": f"a {(GOOD + BAD)[i % 8]} day {i}"} for i in range(48)]
    labels = _label(tmp_path, "rate", items, "".join("3\n" if i % 8 < 4 else "1\n" for i in range(48)))
    rating = run(make_cfg("experiment=reward_tiny", "method.objective=rating", "data=feedback_file",
                          f"data.source.path={labels}", "data.rating_range=[1,3]", *TINY, fast=False, subdir="rm"))
    assert rating["data/kept"] == 48 and "test/spearman" in rating
    kto = run(make_cfg("experiment=kto_tiny", "data.source.kind=file", f"data.source.path={labels}",
                       "data.source.format=ratings", "data.desirable_threshold=3", *TINY, fast=False, subdir="kto"))
    assert kto["data/kept"] == 48 and "test/loss" in kto
