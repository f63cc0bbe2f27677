"""``rlhf-loop``: rounds of sample -> label (simulated annotator) -> DPO -> measure, through the real command; a
rerun skips what is done and a kill in the middle of a round loses and duplicates no label."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf.data.simulated_feedback import bradley_terry_choice
from rlhf.loop import simulated_labels, train_command

TINY_DPO = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
            "data.loader.batch_size=4", "trainer.max_steps=4", "trainer.val_check_interval=4",
            "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.enable_model_summary=false",
            "callbacks.progress_bar=null", "logger=csv", "method.warmup_steps=1", "data.split.val_fraction=0.2",
            "data.split.test_fraction=0.2", "method.evaluation.enabled=false", "method.lr=1e-3"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _loop(tmp_path: Path, policy: Path, rounds: int = 2, **popen) -> list[str]:
    prompts = tmp_path / "prompts.txt"
    if not prompts.exists():
        prompts.write_text("".join(f"Today in the news, story {i}:\n" for i in range(4 + 2 * 24)))
    return [sys.executable, "-m", "rlhf.loop", "--policy", str(policy), "--prompts", str(prompts), "--out",
            str(tmp_path / "loop"), "--rounds", str(rounds), "--prompts-per-round", "24", "--eval-prompts", "4",
            "--eval-samples", "2", "--max-new-tokens", "6", "--epochs", "0", "--gold", "offensive",  # (VADER: a random
            "--train", *TINY_DPO, f"paths.cache_dir={tmp_path}/c"]  # model's samples score 0: ties, nothing to learn)


def _env() -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "RLHF_PROGRESS": "0"}


def test_bradley_terry_choice_follows_its_probability():
    rng = random.Random(0)
    wins = sum(bradley_terry_choice(0.3, 0.1, 0.1, rng) for _ in range(20000)) / 20000
    assert wins == pytest.approx(1 / (1 + pow(2.718281828459045, -2.0)), abs=0.01)  # sigmoid(0.2 / 0.1)
    assert bradley_terry_choice(1.0, -1.0, 0.01, rng) and not bradley_terry_choice(-1.0, 1.0, 0.01, rng)


def test_the_simulated_annotator_labels_each_pair_once_and_the_same_way_on_a_rerun(tmp_path):
    candidates = tmp_path / "c.jsonl"
    candidates.write_text("".join(json.dumps({"id": f"x{i}", "prompt": "p", "a": "What a wonderful happy day",
                                              "b": "A horrible terrible day"}) + "\n" for i in range(6)))
    labels = tmp_path / "labels.jsonl"
    assert simulated_labels(candidates, labels, "vader", 0.1, seed=0) == 6
    first = _rows(labels)
    assert all(r["chosen"] == "What a wonderful happy day" for r in first)  # a gold gap of ~1.7 at T=0.1
    assert first[0]["annotator"] == "simulated-vader-T0.1" and first[0]["gold_chosen"] > first[0]["gold_rejected"]
    labels.write_text("".join(json.dumps(r) + "\n" for r in first[:3]))  # as if it stopped after three
    assert simulated_labels(candidates, labels, "vader", 0.1, seed=0) == 3
    assert [r["id"] for r in _rows(labels)] == [f"x{i}" for i in range(6)]
    alike = tmp_path / "alike.jsonl"  # VADER scores both 0: no preference to simulate, a tie
    alike.write_text(json.dumps({"id": "y", "prompt": "p", "a": "the table", "b": "a chair"}) + "\n")
    simulated_labels(alike, tmp_path / "ties.jsonl", "vader", 0.1, seed=0)
    assert _rows(tmp_path / "ties.jsonl")[0]["tie"] is True


def test_two_rounds_through_the_real_command_and_a_rerun_skips_them(tmp_path, gpt2_style_dir):
    args = _loop(tmp_path, gpt2_style_dir)
    args[args.index("--train"):args.index("--train")] = ["--wandb-project", "loop-test", "--train-from", "previous"]
    out = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    loop = tmp_path / "loop"
    run_id = (loop / "wandb_id").read_text().strip()  # one W&B run for the loop, each round logged to it
    assert list((loop / "wandb").glob(f"offline-run-*-{run_id}"))
    summaries = _rows(loop / "loop_summary.jsonl")
    assert [s["round"] for s in summaries] == [0, 1]
    assert [s["labels_total"] for s in summaries] == [24, 48]  # round 1 trains on the labels of both rounds
    assert summaries[1]["policy"] == str(loop / "round1" / "train" / "export")
    assert all(0.0 <= s["gold"] <= 1.0 and s["samples"] == 8 for s in summaries)
    r1 = _rows(loop / "round1" / "candidates.jsonl")
    assert r1[0]["policy"] == str(loop / "round0" / "train" / "export")  # round 1 samples from round 0's policy
    assert "round 1: 48 labels; held-out gold" in out.stdout
    config = (loop / "round1" / "train" / "config_resolved.yaml").read_text()
    assert "round0/train/export" in config and "round1/train_labels.jsonl" in config
    export = loop / "round0" / "train" / "export" / "model.safetensors"
    stamp = export.stat().st_mtime
    again = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "training on" not in again.stdout  # nothing is sampled or trained again
    assert export.stat().st_mtime == stamp


def test_by_default_every_round_trains_from_the_starting_policy_as_its_reference(tmp_path, gpt2_style_dir):
    args = _loop(tmp_path, gpt2_style_dir)
    out = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    loop = tmp_path / "loop"
    r1 = _rows(loop / "round1" / "candidates.jsonl")
    assert r1[0]["policy"] == str(loop / "round0" / "train" / "export")  # sampled from the newest policy
    config = (loop / "round1" / "train" / "config_resolved.yaml").read_text()
    assert f"name_or_path: {gpt2_style_dir}\n" in config and "round0/train/export" not in config  # trained from the start
    assert [s["labels_total"] for s in _rows(loop / "loop_summary.jsonl")] == [24, 48]


@pytest.mark.slow
def test_a_kill_during_a_rounds_training_loses_and_duplicates_no_label(tmp_path, gpt2_style_dir):
    args = _loop(tmp_path, gpt2_style_dir)
    args[args.index("trainer.max_steps=4")] = "trainer.max_steps=200"
    args += ["callbacks.checkpoint.every_n_train_steps=5"]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpt = tmp_path / "loop" / "round0" / "train" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    assert ckpt.exists()
    os.killpg(proc.pid, signal.SIGKILL)  # the loop and its training run, mid-training
    proc.wait()
    labels = _rows(tmp_path / "loop" / "round0" / "labels.jsonl")
    assert len(labels) == 24
    args[args.index("trainer.max_steps=200")] = "trainer.max_steps=12"
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "loop" / "round0" / "train" / "train.log").read_text()
    assert "Restoring states from the checkpoint path" in log or "resum" in log.lower()
    for r in (0, 1):
        ids = [row["id"] for row in _rows(tmp_path / "loop" / f"round{r}" / "labels.jsonl")]
        assert len(ids) == len(set(ids)) == 24
    assert _rows(tmp_path / "loop" / "loop_summary.jsonl")[1]["labels_total"] == 48


def test_each_rounds_dpo_makes_epochs_over_every_label_so_far_unless_told_otherwise():
    """--epochs 3 (the default): the step budget grows with the labels (experiments/feedback_loop: gold rose every
    round in 3/3 seeds with it); the user's --train overrides come last, so they win; --epochs 0: dpo_tiny's steps."""
    import argparse

    args = argparse.Namespace(epochs=3, seed=2, train=["trainer.max_epochs=5"])
    command = train_command(args, "sft/export", Path("labels.jsonl"), Path("round1/train"), 1)
    assert command[3:] == ["experiment=dpo_tiny", "model=pretrained", "model.name_or_path=sft/export",
                           "data.source.kind=file", "data.source.path=labels.jsonl", "seed=2001", "ckpt_path=auto",
                           "hydra.run.dir=round1/train", "trainer.max_steps=-1", "trainer.max_epochs=3",
                           "trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=1",
                           "trainer.max_epochs=5"]
    args.epochs = 0
    assert not any("max_epochs=3" in a or "max_steps" in a for a in train_command(args, "s", Path("l"), Path("t"), 0))
