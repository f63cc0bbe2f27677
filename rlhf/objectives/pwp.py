"""Preference-weighted LM objectives (Korbak et al. 2023, "Pretraining Language Models with Human Preferences").

All take next-token ``logits`` [B, T, V] and ``labels`` [B, T] already aligned (position t predicts labels[t]; IGNORE_INDEX
is ignored) and per-token tensors aligned the same way: ``misaligned`` (bool: the predicted token's segment crosses
the threshold), ``rewards`` (R of the predicted token's segment, higher is better). Each returns ``(loss, logs)``
with the loss a mean over the valid tokens, as in the released code.

- MLE (also filtering and conditional training, whose difference is in the data): mean NLL.
- Unlikelihood: NLL on aligned tokens, ``-alpha * log(1 - p)`` on misaligned ones (``strict``); the released code's
  soft mode weights each token by ``1 - score`` instead (score in [0, 1]), which it falls into whenever the threshold
  is 0 (``if self.score_threshold:`` is false for 0).
- RWR: NLL weighted by ``exp(R / beta)``, clamped to [0, weight_max].
- AWR: NLL weighted by ``exp((R - V) / beta)`` (V detached), clamped; plus ``(1 - alpha)`` times the value MSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhf.objectives import IGNORE_INDEX


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood (0 where ignored) and the valid-token mask."""
    valid = labels != IGNORE_INDEX
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.clamp(min=0).reshape(-1),
                          reduction="none").view(labels.shape)
    return nll * valid, valid


def _mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return (x * valid).sum() / valid.sum().clamp(min=1)


def mle_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    nll, valid = token_nll(logits, labels)
    loss = _mean(nll, valid)
    return loss, {"lm_loss": loss.detach()}


def unlikelihood_loss(logits: torch.Tensor, labels: torch.Tensor, misaligned: torch.Tensor, alpha: float = 1.0,
                      scores: torch.Tensor | None = None, mode: str = "strict"
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    nll, valid = token_nll(logits, labels)
    p = torch.exp(-nll)
    unlikely = -torch.log(torch.clamp(1.0 - p, min=1e-20))
    if mode == "strict":
        aligned_weight = (~misaligned).float()
    elif mode == "soft":
        if scores is None:
            raise ValueError("unlikelihood mode=soft needs the per-token scores (misalignment in [0, 1])")
        aligned_weight = (1.0 - scores).clamp(0.0, 1.0)
    else:
        raise ValueError(f"unknown unlikelihood mode {mode!r}; use strict or soft")
    per_token = aligned_weight * nll + (1.0 - aligned_weight) * alpha * unlikely
    loss = _mean(per_token, valid)
    return loss, {"lm_loss": _mean(nll, valid).detach(), "unlikelihood_loss": _mean(unlikely * (1 - aligned_weight),
                                                                                     valid).detach(),
                  "aligned_token_fraction": _mean(aligned_weight, valid).detach()}


def reward_weights(advantages: torch.Tensor, beta: float, weight_max: float) -> torch.Tensor:
    return torch.clamp(torch.exp(advantages / beta), 0.0, weight_max)


def rwr_loss(logits: torch.Tensor, labels: torch.Tensor, rewards: torch.Tensor, beta: float = 1.0,
             weight_max: float = 1000.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    nll, valid = token_nll(logits, labels)
    weights = reward_weights(rewards, beta, weight_max).detach()
    loss = _mean(nll * weights, valid)
    return loss, {"lm_loss": _mean(nll, valid).detach(), "weighted_lm_loss": loss.detach(),
                  "weight_avg": _mean(weights, valid), "weight_max": (weights * valid).max()}


def awr_loss(logits: torch.Tensor, labels: torch.Tensor, rewards: torch.Tensor, values: torch.Tensor,
             alpha: float = 0.5, beta: float = 1.0, weight_max: float = 1000.0
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    nll, valid = token_nll(logits, labels)
    advantages = rewards - values.detach()
    weights = reward_weights(advantages, beta, weight_max).detach()
    weighted = _mean(nll * weights, valid)
    value_loss = _mean((values - rewards) ** 2, valid)
    loss = alpha * weighted + (1.0 - alpha) * value_loss
    return loss, {"lm_loss": _mean(nll, valid).detach(), "weighted_lm_loss": weighted.detach(),
                  "value_loss": value_loss.detach(), "weight_avg": _mean(weights, valid),
                  "weight_max": (weights * valid).max(), "advantage_avg": _mean(advantages, valid)}


@dataclass(frozen=True)
class TokenTerms:
    """What a PWP objective reads, aligned so that position t predicts ``labels[t]`` (all [B, T])."""

    logits: torch.Tensor  # [B, T, V] next-token logits
    labels: torch.Tensor  # [B, T] the predicted tokens, IGNORE_INDEX where nothing is predicted
    misaligned: torch.Tensor  # [B, T] bool: the predicted token's segment crosses the threshold
    rewards: torch.Tensor  # [B, T] R of the predicted token's segment (higher is better)
    scores: torch.Tensor  # [B, T] the raw segment score
    values: torch.Tensor | None = None  # [B, T] value-head predictions (objectives with needs_values)


class Objective:
    """A PWP objective: ``objective(terms) -> (loss, logs)``. Built from the method's settings by ``from_config``
    (``method.<its keys>``); ``needs_values`` asks the module for a value head. Adding one = a class here and its
    name in ``OBJECTIVES``."""

    needs_values = False

    @classmethod
    def from_config(cls, cfg: Any) -> Objective:
        return cls()

    def __call__(self, t: TokenTerms) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError


class MLE(Objective):
    """Mean NLL: plain LM training, and filtering and conditional training (their difference is in the data)."""

    def __call__(self, t: TokenTerms) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return mle_loss(t.logits, t.labels)


@dataclass(frozen=True)
class Unlikelihood(Objective):
    alpha: float
    mode: str

    @classmethod
    def from_config(cls, cfg: Any) -> Unlikelihood:
        return cls(cfg.unlikelihood_alpha, cfg.unlikelihood_mode)

    def __call__(self, t: TokenTerms) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return unlikelihood_loss(t.logits, t.labels, t.misaligned, self.alpha, t.scores, self.mode)


@dataclass(frozen=True)
class RWR(Objective):
    beta: float
    weight_max: float

    @classmethod
    def from_config(cls, cfg: Any) -> RWR:
        return cls(cfg.beta, cfg.weight_max)

    def __call__(self, t: TokenTerms) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return rwr_loss(t.logits, t.labels, t.rewards, self.beta, self.weight_max)


@dataclass(frozen=True)
class AWR(Objective):
    alpha: float
    beta: float
    weight_max: float
    needs_values = True

    @classmethod
    def from_config(cls, cfg: Any) -> AWR:
        return cls(cfg.awr_alpha, cfg.beta, cfg.weight_max)

    def __call__(self, t: TokenTerms) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return awr_loss(t.logits, t.labels, t.rewards, t.values, self.alpha, self.beta, self.weight_max)


OBJECTIVES: dict[str, type[Objective]] = {"mle": MLE, "filtering": MLE, "conditional": MLE,
                                          "unlikelihood": Unlikelihood, "rwr": RWR, "awr": AWR}


def distinct_n(token_lists: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of the samples (diversity)."""
    total, seen = 0, set()
    for tokens in token_lists:
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def expected_max(scores: torch.Tensor, k: int) -> float:
    """Mean over groups of k samples of the group maximum ("score_max@k" of RealToxicityPrompts)."""
    n = (scores.numel() // k) * k
    if n == 0:
        return float(scores.max()) if scores.numel() else float("nan")
    return float(scores[:n].view(-1, k).max(-1).values.mean())


def is_misaligned(scores: torch.Tensor | float, threshold: float, sense: str):
    """The one rule for "misaligned" (``data.scores.sense``): ``sense=misalignment``: higher is worse, misaligned iff
    score > threshold; ``sense=reward``: higher is better, misaligned iff score < threshold."""
    return scores > threshold if sense == "misalignment" else scores < threshold


def to_reward(scores: torch.Tensor, sense: str) -> torch.Tensor:
    """Scores as rewards (higher is better) whatever their sense."""
    return -scores if sense == "misalignment" else scores
