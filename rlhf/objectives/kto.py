"""KTO (Ethayarajh et al. 2024): a policy from unpaired desirable / undesirable feedback, as pure functions.

With r(x, y) = log π_θ(y|x) − log π_ref(y|x) (sums over the response tokens) and the reference point

    z0 = max(0, mean over the batch of r(x_i, y_j) on mismatched pairs (each prompt with another example's response))

estimated without gradient (:func:`reference_point`), the loss of an example is

    desirable:   λ_D (1 − σ(β (r − z0)))
    undesirable: λ_U (1 − σ(β (z0 − r)))

(:func:`kto_losses`). The paper advises λ_D n_D / (λ_U n_U) in [1, 4/3] (:func:`weight_ratio`).
"""

from __future__ import annotations

import torch


def reference_point(mismatched_logratio_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """z0 from the summed log-ratios of ``count`` mismatched pairs (summed over ranks by the caller): their mean,
    floored at 0, without gradient."""
    return (mismatched_logratio_sum / count.clamp(min=1)).clamp(min=0).detach()


def kto_losses(logratio: torch.Tensor, desirable: torch.Tensor, z0: torch.Tensor, beta: float,
               desirable_weight: float, undesirable_weight: float) -> torch.Tensor:
    """The loss of each example from its log-ratio r, its label (``desirable``: bool) and the reference point."""
    gain = torch.where(desirable, beta * (logratio - z0), beta * (z0 - logratio))
    weight = torch.where(desirable, torch.full_like(logratio, desirable_weight),
                         torch.full_like(logratio, undesirable_weight))
    return weight * (1 - torch.sigmoid(gain))


def weight_ratio(n_desirable: int, n_undesirable: int, desirable_weight: float, undesirable_weight: float) -> float:
    """λ_D n_D / (λ_U n_U): the paper's advice is to keep it in [1, 4/3]."""
    return desirable_weight * n_desirable / max(undesirable_weight * n_undesirable, 1e-12)
