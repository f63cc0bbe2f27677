"""Sequence classification (``method=classify``): the metrics from a confusion matrix equal torchmetrics', a tiny
encoder learns BBC topics, the export loads with its labels, and a label outside ``data.labels`` names the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhf.objectives.classify import accuracy, confusion, macro_f1
from rlhf.train import run


def test_accuracy_and_macro_f1_from_the_confusion_matrix_equal_torchmetrics():
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    torch.manual_seed(0)
    target = torch.randint(0, 4, (200,))
    preds = torch.where(torch.rand(200) < 0.6, target, torch.randint(0, 4, (200,)))
    matrix = confusion(preds[:120], target[:120], 4) + confusion(preds[120:], target[120:], 4)  # two batches summed
    assert matrix.sum() == 200 and matrix[1, 2] == int(((target == 1) & (preds == 2)).sum())
    assert accuracy(matrix).item() == pytest.approx(multiclass_accuracy(preds, target, 4, average="micro").item())
    assert macro_f1(matrix).item() == pytest.approx(multiclass_f1_score(preds, target, 4, average="macro").item())


CLASSIFY = ["experiment=classify_bbc", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
            "model.intermediate_size=64", "model.tokenizer.vocab_size=1024", "data.max_length=96",
            "data.loader.batch_size=16", "trainer.val_check_interval=50", "trainer.limit_val_batches=4",
            "trainer.enable_model_summary=false", "callbacks.progress_bar=null", "logger=csv",
            "method.warmup_steps=5", "method.lr=3e-3"]


def test_a_tiny_encoder_learns_bbc_topics_and_exports_its_labels(make_cfg):
    from transformers import AutoModelForSequenceClassification

    cfg = make_cfg(*CLASSIFY, "trainer.max_steps=300", "model.hidden_size=64", "model.intermediate_size=128", fast=False)
    metrics = run(cfg)
    print("classify_bbc tiny:", {k: round(v, 3) for k, v in metrics.items() if k.startswith("test/")})
    assert metrics["test/accuracy"] > 0.4 and metrics["test/macro_f1"] > 0.3  # 5 topics: chance is 0.2 (0.50 measured)
    out = Path(cfg.paths.output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out / "export")
    assert model.config.id2label == {0: "business", 1: "entertainment", 2: "politics", 3: "sports", 4: "tech"}
    table = json.loads((out / "confusion_matrix_test.json").read_text())
    counts = [row[1:] for row in table["rows (true) x columns (predicted)"]]
    assert sum(map(sum, counts)) == metrics["data/test/business"] + metrics["data/test/entertainment"] + \
        metrics["data/test/politics"] + metrics["data/test/sports"] + metrics["data/test/tech"]


def test_a_label_outside_data_labels_names_the_document(make_cfg, tmp_path):
    from rlhf.errors import DataError

    path = tmp_path / "reviews.jsonl"
    rows = [{"text": f"a fine text number {i}", "sentiment": "positive" if i % 2 else "negative"} for i in range(60)]
    rows[7]["sentiment"] = "neutral"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_cfg(*CLASSIFY, "trainer.max_steps=2", "data.source.kind=file", f"data.source.path={path}",
                   "data.source.label_column=sentiment", "data.labels=[negative,positive]", fast=False)
    with pytest.raises(DataError, match=r"has label 'neutral', which is not in data.labels=\['negative', 'positive'\]"):
        run(cfg)
