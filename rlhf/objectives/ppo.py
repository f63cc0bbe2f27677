"""PPO maths on padded ``[batch, response_tokens]`` tensors with a 0/1 ``mask`` of real response tokens.

Pure functions (plus two tiny KL-coefficient controllers), unit-tested against hand-computed values and plain loops:
score normalisation (running or per batch), KL estimators, reward shaping, GAE, whitening (also over ranks), RLOO
baselines, the clipped policy and value losses, entropy. Losses return *token sums*; the caller divides by
:func:`token_denominator`, the token count of the whole minibatch (over micro-batches and ranks), so gradient
accumulation gives exactly the large-batch loss. Functions that need the other ranks take an ``all_reduce``
callable (``torch.distributed.all_reduce``: sums a tensor over ranks in place; ``None`` for one process), so they are
tested without processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

AllReduce = Callable[[torch.Tensor], object]  # sums a tensor over ranks in place (torch.distributed.all_reduce)


# ---- masked reductions over response tokens --------------------------------------------------------------------------
def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` on real tokens, 0 elsewhere (also where ``x`` is inf/nan there, e.g. the logprob of a banned pad)."""
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked(x, mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked(x, mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_sum((x - mean) ** 2, mask) / n.clamp(min=1)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries; ``shift_mean=False`` keeps the mean (scale only)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return masked(out, mask)


def global_whiten(x: torch.Tensor, mask: torch.Tensor, all_reduce: AllReduce | None = None) -> torch.Tensor:
    """:func:`masked_whiten` with the mean and unbiased variance of the masked entries of every rank (float64 sums
    of x, x^2 and the count, reduced by ``all_reduce``): the whitening one process with the global batch computes."""
    if all_reduce is None:
        return masked_whiten(x, mask)
    stats = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    all_reduce(stats)
    n = stats[2].clamp(min=2)
    mean = stats[0] / n
    var = (stats[1] / n - mean ** 2) * n / (n - 1)
    return masked(((x.double() - mean) * torch.rsqrt(var.clamp(min=0) + 1e-8)).to(x.dtype), mask)


def token_denominator(tokens: torch.Tensor, all_reduce: AllReduce | None = None, world_size: int = 1) -> torch.Tensor:
    """The divisor of a minibatch's token sums: its tokens on all ranks / ``world_size`` (at least 1). DDP averages
    gradients over ranks, so each rank's sum / this is the gradient of the token mean over the global minibatch."""
    tokens = tokens.detach().clone().float()
    if all_reduce is not None:
        all_reduce(tokens)
        tokens = tokens / world_size
    return tokens.clamp(min=1.0)


# ---- scores ----------------------------------------------------------------------------------------------------------
class Moments(NamedTuple):
    """Running statistics of every score seen so far (float64 scalars)."""

    count: torch.Tensor  # how many scores
    mean: torch.Tensor  # their mean
    m2: torch.Tensor  # the sum of their squared deviations from the mean


def update_moments(moments: Moments, values: torch.Tensor) -> Moments:
    """The moments of the scores seen so far and ``values`` together (Chan et al.'s parallel form of Welford's
    update: exact for a whole batch at once)."""
    count, mean, m2 = moments
    n = values.numel()
    batch_mean = values.mean()
    delta = batch_mean - mean
    total = count + n
    new_mean = mean + delta * n / total
    new_m2 = m2 + ((values - batch_mean) ** 2).sum() + delta ** 2 * count * n / total
    return Moments(total, new_mean, new_m2)


def running_standardise(scores: torch.Tensor, moments: Moments) -> torch.Tensor:
    """``(scores - mean) / std`` with the running mean and unbiased std (at least 1e-6), computed in float64."""
    std = torch.sqrt(moments.m2 / (moments.count - 1).clamp(min=1)).clamp(min=1e-6)
    return ((scores.double() - moments.mean) / std).float()


def batch_standardise(scores: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``(scores - mean) / std`` with the mean and unbiased std (at least 1e-6) of ``batch`` (every rank's scores)."""
    return (scores - batch.mean()) / batch.std().clamp(min=1e-6)


def penalise_missing_eos(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """``scores`` less ``penalty`` where the response has no EOS (it ran into max_new_tokens); ``None`` = no penalty."""
    if penalty is None:
        return scores
    return scores - penalty * (~has_eos).float()


# ---- rewards and advantages ------------------------------------------------------------------------------------------
def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from tokens sampled by the policy.

    k1 = log p - log q: unbiased, negative for some tokens, its mean over samples is >= 0 in expectation.
    k3 = (q/p - 1) - log(q/p): unbiased and never negative, lower variance (Schulman, "Approximating KL").
    """
    log_ratio = torch.nan_to_num(logprobs - ref_logprobs)  # pads (-inf - -inf) are masked by the caller
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1 or k3")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row of a right-padded response mask (0 for an empty response)."""
    return (mask.sum(-1).long() - 1).clamp(min=0)


def shape_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl`` on every response token, plus the sequence score at the last real one."""
    rewards = masked(-kl_coef * kl, mask)
    index = last_token_index(mask)
    rewards[torch.arange(len(scores)), index] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens. The episode ends after the last real token: the
    value after it is 0 (no bootstrap) and padded positions get advantage and return 0.

    Returns (advantages, returns = advantages + values).
    """
    values = masked(values, mask)
    rewards = masked(rewards, mask)
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        last = last * mask[:, t]  # padding resets the running sum (the episode ended before it)
        advantages[:, t] = last
    return advantages, masked(advantages + values, mask)


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out baseline: each of the k samples of a prompt (consecutive rows) is compared with the
    mean score of the other k - 1."""
    if group_size < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt (method.samples_per_prompt >= 2)")
    grouped = scores.view(-1, group_size)
    baseline = (grouped.sum(-1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - baseline).reshape(-1)


def rloo_token_advantages(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                          group_size: int) -> torch.Tensor:
    """RLOO on one sequence-level return per sample, ``score - kl_coef * sum of kl``: its leave-one-out advantage
    on every real token of the response."""
    total = scores - kl_coef * kl.sum(-1)
    return masked(rloo_advantages(total, group_size)[:, None].expand_as(mask), mask)


def grpo_advantages(scores: torch.Tensor, group_size: int, std_normalise: bool = True, eps: float = 1e-4
                    ) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024): each of the k samples of a prompt (consecutive rows) minus
    the group's mean score, divided by the group's standard deviation (the unbiased one, as TRL) + ``eps``;
    ``std_normalise=False`` keeps the difference only (Dr. GRPO, Liu et al. 2025: the division favours groups that
    barely differ)."""
    if group_size < 2:
        raise ValueError("GRPO needs at least 2 samples per prompt (method.samples_per_prompt >= 2)")
    grouped = scores.view(-1, group_size)
    centred = grouped - grouped.mean(-1, keepdim=True)
    if std_normalise:
        centred = centred / (grouped.std(-1, keepdim=True) + eps)
    return centred.reshape(-1)


def grpo_token_advantages(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                          group_size: int, std_normalise: bool = True) -> torch.Tensor:
    """GRPO on one sequence-level return per sample, ``score - kl_coef * sum of kl`` (the KL penalty in the reward,
    as every advantage of this PPO; the GRPO paper adds a k3 KL term to the loss instead): its group-relative
    advantage on every real token of the response. No critic."""
    total = scores - kl_coef * kl.sum(-1)
    return masked(grpo_advantages(total, group_size, std_normalise)[:, None].expand_as(mask), mask)


# ---- losses (token sums) ---------------------------------------------------------------------------------------------
def policy_loss_sum(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate ``max(-A r, -A clip(r, 1-e, 1+e))`` summed over real tokens, and its diagnostics (sums,
    except ``ratio_max``)."""
    log_ratio = masked(logprobs - old_logprobs, mask)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_sum(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        logs = {
            "clipfrac": masked_sum((clipped > unclipped).float(), mask),
            "approx_kl": masked_sum(0.5 * log_ratio ** 2, mask),
            "ratio": masked_sum(ratio, mask),
            "ratio_max": masked(ratio, mask).max() if mask.any() else ratio.new_tensor(1.0),
        }
    return loss, logs


def value_loss_sum(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``0.5 * max((v - R)^2, (v_clipped - R)^2)`` summed over real tokens (plain squared error with clip=None)."""
    loss = (values - returns) ** 2
    logs = {}
    if clip is not None:
        clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
        clipped = (clipped_values - returns) ** 2
        with torch.no_grad():
            logs["vf_clipfrac"] = masked_sum((clipped > loss).float(), mask)
        loss = torch.maximum(loss, clipped)
    return 0.5 * masked_sum(loss, mask), logs


# ---- entropy and diagnostics -----------------------------------------------------------------------------------------
def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of a distribution given as log-probabilities along the last axis; -inf entries (banned tokens)
    contribute 0."""
    return -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits) along the last axis; -inf logits (banned tokens) contribute 0."""
    return entropy_from_logprobs(torch.log_softmax(logits.float(), dim=-1))


def logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor,
                         with_entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of ``tokens`` under softmax(logits) and (if asked) the entropy at each position, from one
    log-softmax over the vocabulary."""
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, tokens[..., None]).squeeze(-1)
    return token_logp, entropy_from_logprobs(logp) if with_entropy else None


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - v) / Var(R) over real tokens: 1 = perfect critic, 0 = no better than the mean, < 0 = worse."""
    var_returns = masked_var(returns, mask)
    if float(var_returns) == 0.0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_returns)


# ---- KL coefficient --------------------------------------------------------------------------------------------------
class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, value: float):
        self.value = float(value)

    def update(self, current_kl: float, n_episodes: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. (2019): move the coefficient so the KL per response tracks ``target``:
    ``coef *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_episodes / horizon``."""

    def __init__(self, value: float, target: float, horizon: int):
        super().__init__(value)
        if target <= 0 or horizon <= 0:
            raise ValueError("the adaptive KL controller needs target > 0 and horizon > 0")
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_episodes: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_episodes / self.horizon
