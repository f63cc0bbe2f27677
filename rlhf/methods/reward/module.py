"""``RewardModelModule``: Bradley–Terry on pairwise preferences or regression on ratings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchmetrics import CatMetric

from rlhf.methods.base import TrainableModule
from rlhf.methods.reward.config import RewardMethodConf
from rlhf.models.reward import build_reward_model, reward_scores
from rlhf.objectives.reward import bradley_terry_loss, calibration_bins, calibration_error, rating_loss, spearman
from rlhf.utils.run import write_json


class EvalBuffer(torch.nn.Module):
    """Concatenates per-sample values over an evaluation (synced across devices by torchmetrics). Gold values keep
    their NaNs (a record without a gold score), so they stay aligned with the model's scores row by row."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = names
        self.values = torch.nn.ModuleDict({n: CatMetric(nan_strategy="disable" if n.startswith("gold") else "warn")
                                           for n in names})

    def update(self, **values: torch.Tensor) -> None:
        for name, value in values.items():
            self.values[name].update(value.detach().float())

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in self.names:
            metric = self.values[name]
            out[name] = torch.as_tensor(metric.compute()).reshape(-1) if metric.update_count else torch.zeros(0)
            metric.reset()
        return out


class RewardModelModule(TrainableModule):
    """A reward model. ``objective=pairwise``: ``-log sigmoid(r_chosen - r_rejected - margin)``;
    ``objective=rating``: MSE to ratings normalised by the training set's mean/std (kept with the model)."""

    schema = RewardMethodConf

    def __init__(self, cfg: Any, model: Any, tokenizer_dir: str):
        super().__init__(cfg, model, tokenizer_dir)
        self.objective = self.cfg.objective
        # reward normalisation (mean/std of rewards on the validation responses) and the rating scale
        self.register_buffer("reward_stats", torch.tensor([0.0, 1.0]))
        self.register_buffer("rating_stats", torch.tensor([0.0, 1.0]))
        names = ("chosen", "rejected", "gold_chosen", "gold_rejected") if self.objective == "pairwise" else \
            ("predicted", "target", "rating", "gold")
        self.val_buffer = EvalBuffer(names)
        self.test_buffer = EvalBuffer(names)

    def build_model(self) -> None:
        self.model = build_reward_model(self.model_cfg, self.tokenizer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return reward_scores(self.model, input_ids, attention_mask)

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.objective == "rating" and datamodule is not None:
            self.rating_stats.copy_(torch.tensor(datamodule.rating_stats))

    def _step(self, batch: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        scores = self(batch["input_ids"], batch["attention_mask"])
        if self.objective == "pairwise":
            n = batch["margin"].shape[0]
            loss, logs = bradley_terry_loss(scores[:n], scores[n:], batch["margin"])
        else:
            loss, logs = rating_loss(scores, batch["target"])
        return loss, logs, scores

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, logs, scores = self._step(batch)
        items = batch["margin"].shape[0] if self.objective == "pairwise" else scores.shape[0]
        loss, global_loss = self.global_mean(loss, items)
        self.log("train/loss", global_loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        return loss

    def _eval_step(self, batch: dict, buffer: EvalBuffer) -> None:
        _, _, scores = self._step(batch)
        if self.objective == "pairwise":
            n = batch["margin"].shape[0]
            buffer.update(chosen=scores[:n], rejected=scores[n:], gold_chosen=batch["gold"][:, 0],
                          gold_rejected=batch["gold"][:, 1])
        else:
            buffer.update(predicted=scores, target=batch["target"], rating=batch["rating"], gold=batch["gold"][:, 0])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_buffer)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_buffer)

    def _log_eval(self, stage: str, buffer: EvalBuffer) -> None:
        values = buffer.compute()
        metrics = evaluation_metrics(self.objective, values)
        rewards = torch.cat([values["chosen"], values["rejected"]]) if self.objective == "pairwise" else \
            values["predicted"]
        if stage == "val" and len(rewards) > 1:
            self.reward_stats.copy_(torch.stack([rewards.mean(), rewards.std().clamp(min=1e-6)]))
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, prog_bar=(stage == "val"), sync_dist=True)
        if stage == "test" and self.objective == "pairwise" and len(values["chosen"]) and self._trainer is not None \
                and self.trainer.is_global_zero:  # the reliability diagram, for notebooks/reward_calibration.ipynb
            diff = values["chosen"] - values["rejected"]
            write_json(Path(self.trainer.default_root_dir) / "calibration_test.json",
                       calibration_bins(torch.sigmoid(diff).float(), torch.ones_like(diff).float()))

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val", self.val_buffer)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test", self.test_buffer)

    def export(self, directory: str | Path) -> Path:
        """HF ``AutoModelForSequenceClassification`` (one label) + tokenizer; the normalisation constants go into
        ``config.json`` (``reward_mean``, ``reward_std``, ``rating_mean``, ``rating_std``)."""
        config = self.model.config
        config.reward_mean, config.reward_std = (float(v) for v in self.reward_stats)
        config.rating_mean, config.rating_std = (float(v) for v in self.rating_stats)
        config.reward_objective = self.objective
        return super().export(directory)


def evaluation_metrics(objective: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Held-out metrics from per-sample values (pure: unit-tested on hand-made numbers)."""
    out: dict[str, torch.Tensor] = {}
    if objective == "pairwise":
        chosen, rejected = values["chosen"], values["rejected"]
        if not len(chosen):
            return out
        diff = chosen - rejected
        rewards = torch.cat([chosen, rejected])
        out["loss"] = -torch.nn.functional.logsigmoid(diff).mean()
        out["accuracy"] = (diff > 0).float().mean()
        out["margin"] = diff.mean()
        out["reward_mean"], out["reward_std"] = rewards.mean(), rewards.std() if len(rewards) > 1 else rewards.new_zeros(())
        out["calibration_error"] = calibration_error(torch.sigmoid(diff), torch.ones_like(diff))
        gold_c, gold_r = values["gold_chosen"], values["gold_rejected"]
        if len(gold_c) == len(chosen):
            known = torch.isfinite(gold_c) & torch.isfinite(gold_r)  # files without (or with partial) gold scores
            if known.any():
                out["gold_coverage"] = known.float().mean()
                gold_diff, model_diff = (gold_c - gold_r)[known], diff[known]
                decided = gold_diff != 0
                if decided.any():
                    # does the reward model order held-out texts as the gold scorer does (ties in gold excluded)?
                    out["gold_agreement"] = ((model_diff[decided] > 0) == (gold_diff[decided] > 0)).float().mean()
                # the gold scorer's own agreement with the (noisy) labels; ties count one half
                out["label_gold_agreement"] = ((gold_diff > 0).float() + 0.5 * (gold_diff == 0).float()).mean()
    else:
        predicted, target = values["predicted"], values["target"]
        if not len(predicted):
            return out
        out["loss"] = torch.nn.functional.mse_loss(predicted, target)
        out["mse"] = out["loss"]
        out["spearman"] = spearman(predicted, values["rating"]) if len(predicted) > 1 else predicted.new_zeros(())
        out["reward_mean"], out["reward_std"] = predicted.mean(), predicted.std() if len(predicted) > 1 else predicted.new_zeros(())
        gold = values["gold"]
        if len(gold) == len(predicted):
            known = torch.isfinite(gold)  # files without (or with partial) gold scores
            if known.any():
                out["gold_coverage"] = known.float().mean()
            if known.sum() > 1:
                out["gold_spearman"] = spearman(predicted[known], gold[known])
    return out
