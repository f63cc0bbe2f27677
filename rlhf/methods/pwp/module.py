"""``PreferenceWeightedLMModule``: causal-LM pretraining whose loss uses per-token (segment) preference scores.

``objective=mle`` is plain causal-LM pretraining (or fine-tuning); ``filtering`` and ``conditional`` change the data
(see ``ScoredLMDataModule``) and train with MLE; ``unlikelihood``, ``rwr`` and ``awr`` weight the loss. Validation
and test report ``lm_loss``/``perplexity`` on untouched held-out text; :class:`GenerateAndScore` samples and scores.
"""

from __future__ import annotations

from typing import Any

import torch

from rlhf.callbacks.generation import GenerateAndScore
from rlhf.methods.base import TokenNLL, TrainableModule
from rlhf.methods.pwp.config import PWPMethodConf
from rlhf.models.policy import ValueHead, build_causal_lm
from rlhf.objectives import IGNORE_INDEX
from rlhf.objectives.pwp import OBJECTIVES, TokenTerms, token_nll


class PreferenceWeightedLMModule(TrainableModule):
    schema = PWPMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.new_tokens = list(self.cfg.control_tokens) if self.cfg.objective == "conditional" else []
        self.control_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in self.new_tokens]
        self.objective = OBJECTIVES[self.cfg.objective].from_config(self.cfg)
        self.value_head = None
        self.val_metrics = TokenNLL("lm_loss")  # on untouched held-out text: val/lm_loss, val/perplexity
        self.test_metrics = TokenNLL("lm_loss")

    def build_model(self) -> None:
        self.model = build_causal_lm(self.model_cfg, self.tokenizer, new_tokens=self.new_tokens,
                                     new_token_noise=self.cfg.control_init_noise)
        self.value_head = ValueHead(self.model.config.hidden_size) if self.objective.needs_values else None

    def configure_callbacks(self):
        return [GenerateAndScore(self.cfg.evaluation, self.cfg.seed)] if self.cfg.evaluation.enabled else []

    # ---- training ------------------------------------------------------------------------------------------------
    def _shifted(self, batch: dict, with_hidden: bool = False):
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         output_hidden_states=with_hidden)
        logits = out.logits[:, :-1]
        labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, IGNORE_INDEX)
        hidden = out.hidden_states[-1][:, :-1] if with_hidden else None
        return logits, labels, hidden

    def objective_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, labels, hidden = self._shifted(batch, with_hidden=self.objective.needs_values)
        # position t predicts token t+1: use the predicted token's segment score
        terms = TokenTerms(logits, labels, batch["misaligned"][:, 1:], batch["rewards"][:, 1:], batch["scores"][:, 1:],
                           self.value_head(hidden) if self.objective.needs_values else None)
        return self.objective(terms)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, logs = self.objective_loss(batch)
        tokens = batch["attention_mask"][:, 1:].sum()  # the predicted tokens every objective averages over
        loss, global_loss = self.global_mean(loss, tokens)
        self.log("train/loss", global_loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        self.log("train/misaligned_token_fraction", batch["misaligned"].float().mean())
        return loss

    # ---- evaluation on untouched held-out text -------------------------------------------------------------------
    def _eval_step(self, batch: dict, metrics: TokenNLL) -> None:
        logits, labels, _ = self._shifted(batch)
        nll, valid = token_nll(logits, labels)
        metrics.update(nll.sum(), valid.sum())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)
