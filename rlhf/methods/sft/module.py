"""``SFTModule``: supervised fine-tuning of a causal LM on demonstrations (``method=sft``): the mean NLL of the
response tokens (and EOS), padded or packed rows, response loss and perplexity on held-out demonstrations, and, with
``method.evaluation.enabled``, samples from held-out prompts scored by a scorer."""

from __future__ import annotations

from typing import Any

import torch

from rlhf.callbacks.generation import GenerateAndScore
from rlhf.methods.base import TokenNLL, TrainableModule
from rlhf.methods.sft.config import SFTMethodConf
from rlhf.models.policy import build_causal_lm
from rlhf.objectives.sft import packed_attention, sft_labels, sft_loss


class SFTModule(TrainableModule):
    schema = SFTMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.val_metrics = TokenNLL("loss")
        self.test_metrics = TokenNLL("loss")

    def build_model(self) -> None:
        self.model = build_causal_lm(self.model_cfg, self.tokenizer)

    def configure_callbacks(self):
        return [GenerateAndScore(self.cfg.evaluation, self.cfg.seed)] if self.cfg.evaluation.enabled else []

    def loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean NLL of the batch's response tokens, their count)``. A packed row attends block-diagonally (each
        example to itself), with positions restarting per example."""
        packed = bool((batch["segment"] > 0).any())
        mask = packed_attention(batch["segment"], self.model.dtype) if packed else batch["attention_mask"]
        logits = self.model(input_ids=batch["input_ids"], attention_mask=mask,
                            position_ids=batch["position_ids"]).logits
        labels = sft_labels(batch["input_ids"], batch["response_mask"], batch["attention_mask"],
                            batch["position_ids"], self.cfg.train_on_prompt)
        return sft_loss(logits, labels)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, tokens = self.loss(batch)
        loss, global_loss = self.global_mean(loss, tokens)  # every response token of every rank weighs the same
        self.log("train/loss", global_loss, prog_bar=True)
        self.log("train/response_tokens", tokens.float())
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, tokens = self.loss(batch)
        self.val_metrics.update(loss * tokens, tokens)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss, tokens = self.loss(batch)
        self.test_metrics.update(loss * tokens, tokens)
