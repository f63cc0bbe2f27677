"""``KTOModule``: KTO (Ethayarajh et al. 2024) of a causal-LM policy on unpaired desirable/undesirable feedback
(``method=kto``). The losses are ``rlhf.objectives.kto``; the reference is a frozen copy of the initial policy, or
with LoRA the policy with its adapters off; z0 is the mean log-ratio of the batch's mismatched pairs over every
rank, floored at 0 and detached. Dropout is off in the policy (so in its reference). Metrics, on train and held-out
examples: the loss, the mean log-ratio (implicit reward / β) of desirable and of undesirable responses, z0."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torchmetrics import Metric

from rlhf.callbacks.generation import GenerateAndScore
from rlhf.methods.base import TrainableModule
from rlhf.methods.kto.config import KTOMethodConf
from rlhf.models.lora import is_lora, reference_of
from rlhf.models.policy import build_causal_lm, disable_dropout, frozen_copy
from rlhf.objectives.dpo import sequence_logps
from rlhf.objectives.kto import kto_losses, reference_point

SUMS = ("loss", "desirable_logratio", "undesirable_logratio", "desirable", "undesirable", "count", "kl", "kl_count")


class KTOSums(Metric):
    """Sums over every held-out example and device, for means per label."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in SUMS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, sums: dict[str, torch.Tensor]) -> None:
        for name in SUMS:
            setattr(self, name, getattr(self, name) + sums[name].detach().double())

    def compute(self) -> dict[str, torch.Tensor]:
        return {"loss": (self.loss / self.count.clamp(min=1)).float(),
                "logratio/desirable": (self.desirable_logratio / self.desirable.clamp(min=1)).float(),
                "logratio/undesirable": (self.undesirable_logratio / self.undesirable.clamp(min=1)).float(),
                "kl": (self.kl / self.kl_count.clamp(min=1)).clamp(min=0).float()}


class KTOModule(TrainableModule):
    schema = KTOMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.ref = None
        self.weights = (self.cfg.desirable_weight, self.cfg.undesirable_weight)  # (λ_D, λ_U); balance_weights may set λ_D
        self.val_metrics = KTOSums()
        self.test_metrics = KTOSums()

    def build_model(self) -> None:
        self.model = build_causal_lm(self.model_cfg, self.tokenizer)
        disable_dropout(self.model)
        self.ref = None if is_lora(self.model) else frozen_copy(self.model)

    def configure_callbacks(self):
        return [GenerateAndScore(self.cfg.evaluation, self.cfg.seed)] if self.cfg.evaluation.enabled else []

    def reference_policy(self) -> contextlib.AbstractContextManager[torch.nn.Module]:
        return reference_of(self.model, self.ref)

    def _logratio(self, batch: dict, prefix: str = "") -> torch.Tensor:
        """log π_θ(y|x) − log π_ref(y|x) of each row (``prefix="kl_"``: the mismatched rows, without gradient)."""
        ids, mask, labels = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"], batch[f"{prefix}labels"]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not prefix):
            logps = sequence_logps(self.model(input_ids=ids, attention_mask=mask).logits, labels)[0]
        with torch.no_grad(), self.reference_policy() as reference:
            ref = sequence_logps(reference(input_ids=ids, attention_mask=mask).logits, labels)[0]
        return logps - ref

    def sums(self, batch: dict) -> dict[str, torch.Tensor]:
        """The batch's per-example losses with z0 from every rank's mismatched pairs, as sums (and the mean loss)."""
        logratio = self._logratio(batch)
        kl = self._logratio(batch, "kl_")
        totals = torch.stack([kl.sum(), torch.tensor(float(len(kl)), device=kl.device)])
        if self.trainer.world_size > 1:
            torch.distributed.all_reduce(totals)
        z0 = reference_point(totals[0], totals[1])
        desirable = batch["desirable"].bool()
        losses = kto_losses(logratio, desirable, z0, self.cfg.beta, *self.weights)
        d = desirable.to(logratio.dtype)
        return {"mean_loss": losses.mean(), "loss": losses.sum(), "count": torch.ones_like(losses).sum(),
                "desirable_logratio": (logratio.detach() * d).sum(), "desirable": d.sum(),
                "undesirable_logratio": (logratio.detach() * (1 - d)).sum(), "undesirable": (1 - d).sum(),
                "kl": kl.sum(), "kl_count": torch.ones_like(kl).sum(), "z0": z0}  # (kl sums: this rank's)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sums = self.sums(batch)
        loss, global_loss = self.global_mean(sums["mean_loss"], len(batch["desirable"]))
        self.log("train/loss", global_loss, prog_bar=True)
        self.log("train/kl", sums["z0"])
        totals = torch.stack([sums[k] for k in ("desirable_logratio", "desirable", "undesirable_logratio",
                                                 "undesirable")]).detach()
        if self.trainer.world_size > 1:  # means over the global batch: the labels split unevenly over ranks
            torch.distributed.all_reduce(totals)
        self.log_dict({"train/logratio/desirable": totals[0] / totals[1].clamp(min=1),
                       "train/logratio/undesirable": totals[2] / totals[3].clamp(min=1)})
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metrics.update(self.sums(batch))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_metrics.update(self.sums(batch))


    def on_fit_start(self) -> None:
        """When the loss weights and the label balance are off the paper's advice (λ_D n_D / (λ_U n_U) in
        [1, 4/3]): balance λ_D (``balance_weights``) or warn. (Recomputed from the same training split on a
        resume, so a resumed run trains with the same weights.)"""
        from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

        from rlhf.objectives.kto import weight_ratio

        records = self.trainer.datamodule.splits["train"]
        n_d = sum(1 for r in records if r["desirable"])
        n_u = len(records) - n_d
        ratio = weight_ratio(n_d, n_u, self.cfg.desirable_weight, self.cfg.undesirable_weight)
        if not 1.0 <= ratio <= 4 / 3:
            balanced = self.cfg.undesirable_weight * n_u / max(n_d, 1)  # ratio 1
            found = (f"KTO: λ_D n_D / (λ_U n_U) = {ratio:.2f} with {n_d} desirable and {n_u} undesirable training "
                     f"examples; the paper advises [1, 4/3]")
            if self.cfg.balance_weights:
                self.weights = (balanced, self.cfg.undesirable_weight)
                rank_zero_info(f"{found}: method.balance_weights trains with λ_D = {balanced:.3f} (ratio 1)")
            else:
                rank_zero_warn(f"{found}, e.g. method.desirable_weight={balanced:.2f} or method.balance_weights=true")
