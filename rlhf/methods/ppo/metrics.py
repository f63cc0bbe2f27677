"""What a PPO run logs, as torchmetrics states that sum over batches and devices (as ``MaskedTokenMetrics`` in
``rlhf/methods/mlm/module.py``): :class:`SampleMeans` for evaluation, :class:`UpdateStats` for the update's
diagnostics; :func:`sample_values`, what evaluation averages, and :func:`rollout_stats`, the per-rank numbers of one
training rollout.

States are updated out of place: a test under inference mode (``evaluate_at_start``) resets them to inference
tensors, which a fit's validation (outside inference mode) could not update in place."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from rlhf.methods.ppo.rollout import Advantages, Rollout
from rlhf.objectives.ppo import explained_variance, masked, masked_mean

EVAL_KEYS = ("reward", "kl", "response_length", "eos_rate", "gold")
UPDATE_SUMS = ("pg_loss", "vf_loss", "vf_clipfrac", "clipfrac", "approx_kl", "ratio")


class SampleMeans(Metric):
    """Per key, the mean over every sample of every batch and device (summed values / summed count, float32 as
    torchmetrics' ``MeanMetric``). Keys never updated (``gold`` without a gold scorer) are left out of ``compute``."""

    full_state_update = False

    def __init__(self, keys: tuple[str, ...] = EVAL_KEYS):
        super().__init__()
        self.names = tuple(keys)
        for key in self.names:
            self.add_state(f"{key}_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
            self.add_state(f"{key}_count", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, values: dict[str, torch.Tensor]) -> None:
        """``values``: per key, a ``[B]`` tensor with one value per sample."""
        for key, value in values.items():
            value = value.detach().to(torch.get_default_dtype())
            setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + value.sum())
            setattr(self, f"{key}_count", getattr(self, f"{key}_count") + value.numel())

    def compute(self) -> dict[str, torch.Tensor]:
        sums = {key: (getattr(self, f"{key}_sum"), getattr(self, f"{key}_count")) for key in self.names}
        return {key: total / count for key, (total, count) in sums.items() if count > 0}


class UpdateStats(Metric):
    """The update's diagnostics over one iteration's minibatches and every device: each token sum (``UPDATE_SUMS``,
    ``update_entropy`` with an entropy bonus) over the summed token count, the largest probability ratio, and the
    mean ratio of the first minibatch (1 up to float error: the rollout's logprobs are the policy's). Float64 sums."""

    full_state_update = False

    def __init__(self, with_entropy: bool):
        super().__init__()
        self.sum_keys = UPDATE_SUMS + (("update_entropy",) if with_entropy else ())
        for key in (*self.sum_keys, "tokens", "first_ratio", "first_tokens"):
            self.add_state(key, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ratio_max", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="max")

    def update(self, sums: dict[str, torch.Tensor], first: bool) -> None:
        """``sums``: one minibatch's token sums (as :meth:`PPOModule.minibatch_backward` returns them, with
        ``tokens`` and ``ratio_max``); ``first``: it is the iteration's first minibatch."""
        for key in (*self.sum_keys, "tokens"):
            setattr(self, key, getattr(self, key) + sums[key])
        self.ratio_max = torch.maximum(self.ratio_max, sums["ratio_max"])
        if first:
            self.first_ratio = self.first_ratio + sums["ratio"]
            self.first_tokens = self.first_tokens + sums["tokens"]

    def compute(self) -> dict[str, torch.Tensor]:
        out = {key: getattr(self, key) / self.tokens.clamp(min=1.0) for key in self.sum_keys}
        out["ratio_max"] = self.ratio_max
        out["first_minibatch_ratio"] = self.first_ratio / self.first_tokens.clamp(min=1.0)
        return out


def k1_per_response(rollout: Rollout) -> torch.Tensor:
    """[B] the sum of ``log p - log p_ref`` over each response: the unbiased (k1) estimate of its KL to the reference,
    whatever estimator the reward uses."""
    return (rollout.logprobs - rollout.ref_logprobs).sum(-1)


def sample_values(rollout: Rollout) -> dict[str, torch.Tensor]:
    """Per key of ``EVAL_KEYS``, one value per response (``gold`` only with a gold scorer)."""
    values = {"reward": rollout.scores, "kl": k1_per_response(rollout), "response_length": rollout.mask.sum(-1),
              "eos_rate": rollout.has_eos.float()}
    if rollout.gold is not None:
        values["gold"] = rollout.gold.float()
    return values


def rollout_stats(rollout: Rollout, adv: Advantages, with_critic: bool) -> dict[str, torch.Tensor]:
    """This rank's numbers of a training rollout: means per response (reward, KL, length, ...) and per token
    (advantages, returns, values), the largest gap between the sampler's and the recomputed logprobs, and (with a
    critic) the explained variance of the returns."""
    mask = rollout.mask
    stats = {
        "reward": rollout.scores.mean(), "reward_shaped": adv.scores.mean(),
        "kl": adv.kl.sum(-1).mean(), "entropy": rollout.entropy,
        "response_length": mask.sum(-1).mean(), "eos_rate": rollout.has_eos.float().mean(),
        "advantage_mean": masked_mean(adv.advantages, mask), "returns_mean": masked_mean(adv.returns, mask),
        "values_mean": masked_mean(rollout.values, mask),
        "rollout_logprob_gap": masked(rollout.sample_logprobs - rollout.logprobs, mask).abs().max(),
    }
    if rollout.gold is not None:
        stats["gold"] = rollout.gold.float().mean()
    if with_critic:
        stats["value_explained_variance"] = torch.tensor(explained_variance(rollout.values, adv.returns, mask))
    return stats
