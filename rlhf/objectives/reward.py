"""Reward-model maths: Bradley–Terry and rating losses, and the metrics that tell whether a reward model is good."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``mean(-log sigmoid(r_chosen - r_rejected - margin))`` (margin as in Llama 2's reward models; 0 if None)."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    with torch.no_grad():
        logs = {"accuracy": ((chosen - rejected) > 0).float().mean(), "margin": (chosen - rejected).mean()}
    return loss, logs


def rating_loss(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean squared error on (normalised) ratings."""
    loss = F.mse_loss(predicted, target)
    return loss, {"mse": loss.detach()}


def calibration_bins(probabilities: torch.Tensor, outcomes: torch.Tensor, bins: int = 10) -> list[dict[str, float]]:
    """The reliability diagram: per equal-width bin of ``p``, the mean predicted probability, the empirical rate of the
    outcome and the count. Pairs are symmetrised (each pair also counted as ``1 - p`` with outcome ``1 - y``), so
    for a pairwise reward model with ``p = sigmoid(r_chosen - r_rejected)`` and ``y = 1`` every bin is populated."""
    p = torch.cat([probabilities, 1 - probabilities]).double().cpu()
    y = torch.cat([outcomes, 1 - outcomes]).double().cpu()
    index = (p * bins).long().clamp(max=bins - 1)
    rows = []
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            rows.append({"low": b / bins, "high": (b + 1) / bins, "predicted": float(p[in_bin].mean()),
                         "observed": float(y[in_bin].mean()), "count": int(in_bin.sum())})
    return rows


def calibration_error(probabilities: torch.Tensor, outcomes: torch.Tensor, bins: int = 10) -> torch.Tensor:
    """Expected calibration error, ``sum_b (n_b / n) |mean(p in b) - mean(outcome in b)|`` over equal-width bins
    (torchmetrics' binary ECE), with pairs symmetrised as in :func:`calibration_bins`: a calibrated model that says
    70% is right 70% of the time."""
    from torchmetrics.functional.classification import binary_calibration_error

    p = torch.cat([probabilities, 1 - probabilities]).float()
    y = torch.cat([outcomes, 1 - outcomes]).long()
    return binary_calibration_error(p, y, n_bins=bins, norm="l1").float()


def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation: the Pearson correlation of average ranks (ties share the mean rank),
    torchmetrics' ``spearman_corrcoef``."""
    from torchmetrics.functional import spearman_corrcoef

    return spearman_corrcoef(x.double(), y.double()).float()
