"""``PreferenceWeightedLMModule``: causal-LM pretraining whose loss uses per-token (segment) preference scores.

``objective=mle`` is plain causal-LM pretraining (or fine-tuning); ``filtering`` and ``conditional`` change the data
(see ``ScoredLMDataModule``) and train with MLE; ``unlikelihood``, ``rwr`` and ``awr`` weight the loss. Validation
and test report ``lm_loss``/``perplexity`` on untouched held-out text; :class:`GenerateAndScore` samples and scores.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import AutoTokenizer

from rlhf.methods.base import TrainableModule, _plain
from rlhf.methods.pwp.evaluation import GenerateAndScore
from rlhf.models.policy import ValueHead, build_causal_lm
from rlhf.objectives.pwp import awr_loss, mle_loss, rwr_loss, token_nll, unlikelihood_loss

OBJECTIVES = ("mle", "filtering", "conditional", "unlikelihood", "rwr", "awr")


class PreferenceWeightedLMModule(TrainableModule):
    def __init__(self, model: Mapping, tokenizer_dir: str, objective: str = "mle", lr: float = 1e-3,
                 weight_decay: float = 0.1, betas: tuple = (0.9, 0.95), eps: float = 1e-8, warmup_steps: int = 0,
                 scheduler: str = "linear", min_lr_ratio: float = 0.0, unlikelihood_alpha: float = 1.0,
                 unlikelihood_mode: str = "strict", beta: float = 1.0, awr_alpha: float = 0.5,
                 weight_max: float = 1000.0, control_tokens: list | None = None, control_init_noise: float = 0.01,
                 evaluation: Mapping | None = None, seed: int = 0):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"method.objective={objective!r}; use one of {', '.join(OBJECTIVES)}")
        model = _plain(model)
        self.save_hyperparameters({"model": model, "tokenizer_dir": str(tokenizer_dir), "objective": objective,
                                   "lr": lr, "weight_decay": weight_decay, "betas": list(betas), "eps": eps,
                                   "warmup_steps": warmup_steps, "scheduler": scheduler,
                                   "min_lr_ratio": min_lr_ratio, "unlikelihood_alpha": unlikelihood_alpha,
                                   "unlikelihood_mode": unlikelihood_mode, "beta": beta, "awr_alpha": awr_alpha,
                                   "weight_max": weight_max, "control_tokens": list(control_tokens or []),
                                   "control_init_noise": control_init_noise,
                                   "evaluation": _plain(evaluation) or {}, "seed": seed})
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        new_tokens = list(control_tokens or []) if objective == "conditional" else []
        self.model = build_causal_lm(model, self.tokenizer, new_tokens=new_tokens, new_token_noise=control_init_noise)
        self.value_head = ValueHead(self.model.config.hidden_size) if objective == "awr" else None
        self.control_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in new_tokens]

    def configure_callbacks(self):
        evaluation = self.hparams.evaluation
        if not evaluation or not evaluation.get("enabled", True):
            return []
        return [GenerateAndScore(**{k: v for k, v in evaluation.items() if k != "enabled"})]

    # ---- training ------------------------------------------------------------------------------------------------
    def _shifted(self, batch: dict, with_hidden: bool = False):
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         output_hidden_states=with_hidden)
        logits = out.logits[:, :-1]
        labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
        hidden = out.hidden_states[-1][:, :-1] if with_hidden else None
        return logits, labels, hidden

    def objective_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hparams
        logits, labels, hidden = self._shifted(batch, with_hidden=hp.objective == "awr")
        # position t predicts token t+1: use the predicted token's segment score
        misaligned, rewards, scores = batch["misaligned"][:, 1:], batch["rewards"][:, 1:], batch["scores"][:, 1:]
        if hp.objective in ("mle", "filtering", "conditional"):
            return mle_loss(logits, labels)
        if hp.objective == "unlikelihood":
            return unlikelihood_loss(logits, labels, misaligned, hp.unlikelihood_alpha, scores, hp.unlikelihood_mode)
        if hp.objective == "rwr":
            return rwr_loss(logits, labels, rewards, hp.beta, hp.weight_max)
        values = self.value_head(hidden)
        return awr_loss(logits, labels, rewards, values, hp.awr_alpha, hp.beta, hp.weight_max)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, logs = self.objective_loss(batch)
        tokens = batch["attention_mask"][:, 1:].sum()  # the predicted tokens every objective averages over
        loss, global_loss = self.global_mean(loss, tokens)
        self.log("train/loss", global_loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        self.log("train/misaligned_token_fraction", batch["misaligned"].float().mean())
        return loss

    # ---- evaluation on untouched held-out text -------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> None:
        logits, labels, _ = self._shifted(batch)
        nll, valid = token_nll(logits, labels)
        for key, value in (("nll", nll.sum()), ("count", valid.sum())):
            self._sums[stage][key] = self._sums[stage].get(key, 0.0) + value.double()

    def on_validation_epoch_start(self) -> None:
        self._sums = {"val": {}, "test": {}}

    on_test_epoch_start = on_validation_epoch_start

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _end(self, stage: str) -> None:
        sums = self._sums[stage]
        if not sums:
            return
        nll, count = sums["nll"], sums["count"]
        if self.trainer.world_size > 1:
            both = self.all_gather(torch.stack([nll, count])).reshape(-1, 2).sum(0)
            nll, count = both[0], both[1]
        loss = (nll / count.clamp(min=1)).float()
        # already reduced over ranks; sync_dist only averages identical values (and tells Lightning so)
        self.log_dict({f"{stage}/lm_loss": loss, f"{stage}/perplexity": torch.exp(loss)}, prog_bar=stage == "val",
                      sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_end(self) -> None:
        self._end("test")
