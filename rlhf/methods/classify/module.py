"""``ClassifyModule``: an encoder (built from config, or any pretrained one: an MLM export, MiniLM, a hub BERT)
with a classification head, trained by cross-entropy on labelled text (``method=classify``). Held-out metrics sum a
confusion matrix over batches and devices: loss, accuracy and macro-F1; at test the confusion matrix itself goes to
W&B (a table) and ``<run>/confusion_matrix_test.json``. The export is an ``AutoModelForSequenceClassification`` with
``id2label``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from rlhf.methods.base import TrainableModule
from rlhf.methods.classify.config import ClassifyMethodConf
from rlhf.models.backbones import build_classifier
from rlhf.objectives.classify import accuracy, confusion, macro_f1


class ConfusionMetrics(Metric):
    full_state_update = False

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.add_state("matrix", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("nll", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.matrix = self.matrix + confusion(logits.argmax(-1), labels, self.num_classes)
        self.nll = self.nll + F.cross_entropy(logits.float(), labels, reduction="sum").detach().double()
        self.count = self.count + len(labels)

    def compute(self) -> dict[str, torch.Tensor]:
        self.summed = self.matrix.clone()  # the counts of every device (compute runs on the synced states)
        return {"loss": (self.nll / self.count.clamp(min=1)).float(), "accuracy": accuracy(self.matrix).float(),
                "macro_f1": macro_f1(self.matrix).float()}


class ClassifyModule(TrainableModule):
    schema = ClassifyMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.labels = list(self.cfg.labels)
        self.val_metrics = ConfusionMetrics(len(self.labels))
        self.test_metrics = ConfusionMetrics(len(self.labels))

    def build_model(self) -> None:
        self.model = build_classifier(self.model_cfg, self.tokenizer, self.labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits.float(), batch["labels"], label_smoothing=self.cfg.label_smoothing)
        loss, global_loss = self.global_mean(loss, len(batch["labels"]))  # every document of every rank
        self.log("train/loss", global_loss, prog_bar=True)
        self.log("train/accuracy", (logits.argmax(-1) == batch["labels"]).float().mean(), sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metrics.update(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_metrics.update(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()  # computes (over every device) and logs the scalars
        if self.trainer.is_global_zero:
            rows = [[true, *(int(v) for v in counts)] for true, counts in zip(self.labels,
                                                                               self.test_metrics.summed.tolist())]
            out = Path(self.trainer.default_root_dir) / "confusion_matrix_test.json"
            out.write_text(json.dumps({"labels": self.labels, "rows (true) x columns (predicted)": rows}, indent=1))
            for logger in self.trainer.loggers:
                if hasattr(logger, "log_table"):  # W&B
                    logger.log_table(key="test/confusion_matrix", columns=["true \\ predicted", *self.labels],
                                     data=rows)
