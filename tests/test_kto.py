"""KTO (``method=kto``): the loss and reference point by hand, labels from label rows, ratings and pairs, the
mismatched rows of the reference point, and the real command learning a toy preference from unpaired labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlhf.data.feedback import Policy, validate_unpaired
from rlhf.data.readers import DropReport
from rlhf.objectives import IGNORE_INDEX
from rlhf.objectives.kto import kto_losses, reference_point, weight_ratio
from rlhf.train import run


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_kto_loss_and_reference_point_by_hand():
    # mismatched log-ratios 0.5 and -0.1 on this rank, 0.4 on another: z0 = (0.5 - 0.1 + 0.4) / 3
    z0 = reference_point(torch.tensor(0.8), torch.tensor(3.0))
    assert z0.item() == pytest.approx(0.8 / 3)
    assert reference_point(torch.tensor(-2.0), torch.tensor(4.0)).item() == 0.0  # floored at 0
    r = torch.tensor([1.0, -1.0, 0.2])
    desirable = torch.tensor([True, False, False])
    losses = kto_losses(r, desirable, torch.tensor(0.2), beta=0.5, desirable_weight=1.0, undesirable_weight=2.0)
    expect = [1 - sigmoid(0.5 * (1.0 - 0.2)), 2 * (1 - sigmoid(0.5 * (0.2 + 1.0))), 2 * (1 - sigmoid(0.0))]
    assert losses.tolist() == pytest.approx(expect)
    assert weight_ratio(30, 60, 2.0, 1.0) == pytest.approx(1.0)


def test_labels_come_from_label_rows_ratings_and_pairs():
    policy, rows = Policy(), [(1, {"prompt": "p", "completion": "yes!", "label": True}),
                              (2, {"prompt": "p", "completion": "no.", "label": "undesirable"}),
                              (3, {"prompt": "p", "completion": "eh", "label": "maybe"})]
    report = DropReport("f")
    out = validate_unpaired(rows, None, "f", policy, report, "auto", 4.0)
    assert [(r["response"], r["desirable"]) for r in out] == [("yes!", True), ("no.", False)]
    assert report.dropped["malformed"] == 1
    ratings = [(1, {"prompt": "p", "response": "a", "rating": 5}), (2, {"prompt": "p", "response": "b", "rating": 3})]
    assert [r["desirable"] for r in validate_unpaired(ratings, None, "f", policy, DropReport("f"), "ratings", 4.0)] \
        == [True, False]
    pairs = [(1, {"prompt": "p", "chosen": "good", "rejected": "bad"})]
    assert [(r["response"], r["desirable"]) for r in validate_unpaired(pairs, None, "f", policy, DropReport("f"),
                                                                        "pairs", 4.0)] == [("good", True), ("bad", False)]


KTO = ["experiment=kto_tiny", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
       "model.intermediate_size=64", "model.tokenizer.vocab_size=400", "data.loader.batch_size=8",
       "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
       "logger=csv", "data.split.val_fraction=0.2", "data.split.test_fraction=0.2", "method.warmup_steps=1"]
GOOD = ["lovely", "great", "happy", "wonderful"]
BAD = ["awful", "terrible", "sad", "horrible"]


def _thumbs(path: Path, n: int = 240, good_every: int = 2) -> Path:
    rows = []
    for i in range(n):
        good = i % good_every == 0
        word = (GOOD if good else BAD)[(i // 2) % 4]
        rows.append({"prompt": f"review number {i} of item {i % 17} :", "completion": f" it was {word} .",
                     "label": "up" if good else "down"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_mismatched_rows_pair_each_prompt_with_the_next_response(make_cfg, tmp_path):
    from rlhf.train import build_data_and_module

    cfg = make_cfg(*KTO, "data.source.kind=file", f"data.source.path={_thumbs(tmp_path / 't.jsonl', 40)}",
                   fast=False)
    datamodule, _ = build_data_and_module(cfg, tmp_path / "tok")
    dataset = datamodule.build_dataset("train")
    samples = [dataset[i] for i in range(3)]
    batch = datamodule.collate(samples)
    for i in range(3):
        other = samples[(i + 1) % 3]
        row = batch["kl_input_ids"][i][batch["kl_attention_mask"][i].bool()].tolist()
        assert row == samples[i]["prompt"] + other["response"] + [datamodule.tokenizer.eos_token_id]
        labelled = batch["kl_labels"][i][batch["kl_labels"][i] != IGNORE_INDEX].tolist()
        assert labelled == other["response"] + [datamodule.tokenizer.eos_token_id]
    assert batch["desirable"].tolist() == [s["desirable"] for s in samples]


def test_kto_learns_a_toy_preference_from_unpaired_labels(make_cfg, tmp_path):
    path = _thumbs(tmp_path / "thumbs.jsonl")
    metrics = run(make_cfg(*KTO, "data.source.kind=file", f"data.source.path={path}", "method.lr=3e-3",
                           "trainer.max_steps=40", "trainer.val_check_interval=40", fast=False))
    print("KTO toy:", {k: round(v, 3) for k, v in metrics.items() if k.startswith("test/")})
    assert metrics["test/logratio/desirable"] > 0 > metrics["test/logratio/undesirable"]
    assert metrics["test/logratio/desirable"] - metrics["test/logratio/undesirable"] > 5.0


def test_balance_weights_sets_the_desirable_weight_from_the_training_labels(make_cfg, tmp_path, caplog):
    import logging
    import re

    path = _thumbs(tmp_path / "thumbs.jsonl", n=120, good_every=4)  # 1 desirable in 4: ratio 1/3 with equal weights
    short = ["trainer.max_steps=1", "test=false", "export=false"]
    with caplog.at_level(logging.INFO):
        run(make_cfg(*KTO, *short, "data.source.kind=file", f"data.source.path={path}", fast=False, subdir="a"))
    found = re.search(r"= (\d+\.\d+) with (\d+) desirable and (\d+) undesirable.*trains with λ_D = (\d+\.\d+) "
                      r"\(ratio 1\)", caplog.text)
    assert found, caplog.text[-2000:]  # experiment=kto_tiny balances
    ratio, n_d, n_u, weight = float(found[1]), int(found[2]), int(found[3]), float(found[4])
    assert ratio == pytest.approx(n_d / n_u, abs=0.01) and weight == pytest.approx(n_u / n_d, abs=1e-3)
    with pytest.warns(UserWarning, match="method.balance_weights=true"):
        run(make_cfg(*KTO, *short, "method.balance_weights=false", "data.source.kind=file", f"data.source.path={path}",
                     fast=False, subdir="b"))


def test_kto_tiny_runs_offline_on_the_simulated_ratings_and_exports(make_cfg):
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(*KTO, "data.source.max_articles=60", fast=False)
    metrics = run(cfg)
    for key in ("train/loss", "train/kl", "val/loss", "test/logratio/desirable", "test/kl"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert AutoModelForCausalLM.from_pretrained(Path(cfg.paths.output_dir) / "export") is not None
    from rlhf.methods.kto.module import KTOModule  # the checkpoint loads back (its settings are a plain dict there)

    loaded = KTOModule.load_from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert loaded.model is not None and loaded.weights == (1.0, 1.0)  # (balanced again when a fit starts)
