"""``MaskedLMModule``: BERT-style masked-LM pretraining of a tiny config model or any pretrained encoder."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from rlhf.methods.base import TrainableModule
from rlhf.methods.mlm.config import MLMMethodConf
from rlhf.models.backbones import build_masked_lm
from rlhf.objectives.mlm import masked_lm_loss, masked_lm_sums


class MaskedTokenMetrics(Metric):
    """Micro-averaged over masked tokens across batches and devices: loss and perplexity from summed NLL over the
    summed count (not a mean of per-batch values), accuracy from summed correct predictions."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("nll", "correct", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        sums = masked_lm_sums(logits.detach(), labels)
        # out of place: states reset under inference mode must not be updated in place later
        self.nll = self.nll + sums["nll"].double()
        self.correct = self.correct + sums["correct"].double()
        self.count = self.count + sums["count"].double()

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp(min=1)
        loss = self.nll / count
        return {"loss": loss.float(), "perplexity": torch.exp(loss).float(), "masked_accuracy": (self.correct / count).float()}


class MaskedLMModule(TrainableModule):
    """Masked-LM pretraining of a tiny config model or any pretrained encoder (``method=mlm``)."""

    schema = MLMMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.val_metrics = MaskedTokenMetrics()
        self.test_metrics = MaskedTokenMetrics()

    def build_model(self) -> None:
        self.model = build_masked_lm(self.model_cfg, self.tokenizer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        logging_step = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        loss, logs = masked_lm_loss(logits, batch["labels"], with_accuracy=logging_step)
        loss, global_loss = self.global_mean(loss, logs["masked_tokens"])  # mean over every masked token of all ranks
        self.log("train/loss", global_loss, prog_bar=True)
        if logging_step:
            self.log("train/masked_accuracy", logs["accuracy"])
            self.log("train/mask_fraction", logs["masked_tokens"] / batch["attention_mask"].sum().clamp(min=1))
        return loss

    def _eval_step(self, batch: dict, metrics: MaskedTokenMetrics) -> None:
        metrics.update(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)
