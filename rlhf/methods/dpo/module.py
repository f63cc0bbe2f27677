"""``DPOModule``: direct preference optimisation of a causal-LM policy on preference pairs (``method=dpo``).

The loss of each pair comes from ``rlhf.objectives.dpo`` (``method.loss``: sigmoid, robust, ipo, hinge; label
smoothing; reference-free; RPO's NLL term). The reference is, in order of preference: none
(``reference_free``), the log-probs computed once before training (``precompute_reference``: kept in the checkpoint,
so a resume does not recompute them with trained weights), the policy with its LoRA adapters off (no copy), or a
frozen copy of the initial policy. Metrics, on train and on held-out pairs: the implicit rewards of chosen and
rejected, their margin, the share of pairs ranked right (``rewards/accuracy``), the log-probs, and the gold
agreement where pairs carry gold scores. Dropout is off in the policy (and so in its reference).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import Metric

from rlhf.callbacks.generation import GenerateAndScore
from rlhf.methods.base import TrainableModule
from rlhf.methods.dpo.config import DPOMethodConf
from rlhf.models.lora import is_lora, reference_of
from rlhf.models.policy import build_causal_lm, disable_dropout, frozen_copy
from rlhf.objectives.dpo import dpo_losses, implicit_rewards, preference_margin, sequence_logps

STATS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "logps/chosen",
         "logps/rejected")


class PairMeans(Metric):
    """Means over every held-out pair of every batch and device of the per-pair statistics (``STATS``)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("count", *STATS):
            self.add_state(name.replace("/", "_"), default=torch.tensor(0.0, dtype=torch.float64),
                           dist_reduce_fx="sum")

    def update(self, per_pair: dict[str, torch.Tensor]) -> None:
        self.count = self.count + len(per_pair["loss"])
        for name in STATS:
            attr = name.replace("/", "_")
            setattr(self, attr, getattr(self, attr) + per_pair[name].detach().double().sum())

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: (getattr(self, name.replace("/", "_")) / self.count.clamp(min=1)).float() for name in STATS}


class DPOModule(TrainableModule):
    schema = DPOMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.ref = None
        self.reference_cache: dict[str, torch.Tensor] = {}  # split -> (pairs, 2) reference log-probs (precomputed)
        self.val_metrics = PairMeans()
        self.test_metrics = PairMeans()

    def build_model(self) -> None:
        """The policy with dropout off (as TRL does: the policy's and the reference's log-probs must be comparable),
        and the reference copy when no other reference is used."""
        self.model = build_causal_lm(self.model_cfg, self.tokenizer)
        disable_dropout(self.model)
        own_copy = not (self.cfg.reference_free or self.cfg.precompute_reference or is_lora(self.model))
        self.ref = frozen_copy(self.model) if own_copy else None

    def configure_callbacks(self):
        return [GenerateAndScore(self.cfg.evaluation, self.cfg.seed)] if self.cfg.evaluation.enabled else []

    def reference_policy(self) -> contextlib.AbstractContextManager[torch.nn.Module | None]:
        """The reference model, or None when there is none in memory (reference-free, precomputed reference)."""
        if self.cfg.reference_free or self.cfg.precompute_reference:
            return contextlib.nullcontext(None)
        return reference_of(self.model, self.ref)

    # ---- log-probs ---------------------------------------------------------------------------------------------------
    def _logps(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return sequence_logps(logits, batch["labels"])

    @torch.no_grad()
    def _reference(self, batch: dict, split: str) -> torch.Tensor | None:
        """Reference log-probs (sums) of the batch's rows (chosen rows, then rejected), or None (reference-free)."""
        if self.cfg.reference_free:
            return None
        if self.cfg.precompute_reference:
            cached = self.reference_cache[split][batch["index"].cpu()].to(self.device)
            return torch.cat([cached[:, 0], cached[:, 1]])
        with reference_of(self.model, self.ref) as reference:
            return self._logps(reference, batch)[0]

    # ---- the loss ----------------------------------------------------------------------------------------------------
    def pair_terms(self, batch: dict, split: str) -> dict[str, torch.Tensor]:
        """Per-pair loss and statistics of a batch (chosen rows first, then rejected)."""
        hp = self.cfg
        logps, counts = self._logps(self.model, batch)
        ref = self._reference(batch, split)
        n = len(logps) // 2
        chosen, rejected = logps[:n], logps[n:]
        ref_chosen, ref_rejected = (ref[:n], ref[n:]) if ref is not None else (None, None)
        if hp.loss == "ipo":  # IPO's margin from per-token average log-probs (see rlhf.objectives.dpo)
            scale = counts.clamp(min=1).to(logps.dtype)
            h = preference_margin(chosen / scale[:n], rejected / scale[n:],
                                  None if ref is None else ref_chosen / scale[:n],
                                  None if ref is None else ref_rejected / scale[n:])
        else:
            h = preference_margin(chosen, rejected, ref_chosen, ref_rejected)
        losses = dpo_losses(h, hp.beta, hp.loss, hp.label_smoothing)
        if hp.rpo_alpha:  # RPO: the NLL per token of the chosen response, added to every pair's loss
            losses = losses + hp.rpo_alpha * (-chosen.sum() / counts[:n].sum().clamp(min=1))
        reward_chosen = implicit_rewards(chosen, ref_chosen, hp.beta)
        reward_rejected = implicit_rewards(rejected, ref_rejected, hp.beta)
        return {"loss": losses, "rewards/chosen": reward_chosen, "rewards/rejected": reward_rejected,
                "rewards/margin": reward_chosen - reward_rejected,
                "rewards/accuracy": (reward_chosen > reward_rejected).float(),
                "logps/chosen": chosen, "logps/rejected": rejected}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.pair_terms(batch, "train")
        loss, global_loss = self.global_mean(terms["loss"].mean(), len(terms["loss"]))  # every pair of every rank
        self.log("train/loss", global_loss, prog_bar=True)
        # means over the global batch (every rank holds the same number of pairs)
        self.log_dict({f"train/{k}": v.detach().mean() for k, v in terms.items() if k != "loss"}, sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_metrics.update(self.pair_terms(batch, "val"))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_metrics.update(self.pair_terms(batch, "test"))


    # ---- the precomputed reference -------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._precompute(("train", "val", "test"))

    def on_test_start(self) -> None:
        self._precompute(("test",))

    @torch.no_grad()
    def _precompute(self, splits: tuple[str, ...]) -> None:
        """The reference log-probs of every pair of ``splits`` with the current (initial) weights, in eval mode, once:
        a resumed run has them from its checkpoint. Every rank computes all of them (no communication)."""
        if not self.cfg.precompute_reference:
            return
        missing = [s for s in splits if s not in self.reference_cache]
        if not missing:
            return
        datamodule = self.trainer.datamodule
        was_training = self.model.training
        self.model.eval()
        try:
            for split in missing:
                rows = []
                for batch in datamodule.reference_loader(split):
                    batch = {k: v.to(self.device) for k, v in batch.items()}
                    logps = self._logps(self.model, batch)[0]
                    n = len(logps) // 2
                    rows.append(torch.stack([logps[:n], logps[n:]], 1).cpu())
                self.reference_cache[split] = torch.cat(rows)
                rank_zero_info(f"[dpo] reference log-probs of {len(self.reference_cache[split])} {split} pairs "
                               f"computed once (method.precompute_reference)")
        finally:
            self.model.train(was_training)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dpo_reference"] = dict(self.reference_cache)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.reference_cache = dict(checkpoint["dpo_reference"])  # (written by on_save_checkpoint)
