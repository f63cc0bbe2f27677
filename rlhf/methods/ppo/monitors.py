"""Health checks of a PPO run, as pure functions of its numbers (unit-tested), warned about once per kind."""

from __future__ import annotations

import math

import torch


def negative_kl(kl_per_response: torch.Tensor) -> str | None:
    """A mean KL to the reference significantly below 0 (by more than 2 standard errors) cannot come from sampling
    noise: tokens are not sampled from the distribution whose logprobs are used (truncated sampling, a temperature
    mismatch, misplaced masks)."""
    n = kl_per_response.numel()
    if n < 2:
        return None
    mean = float(kl_per_response.mean())
    stderr = float(kl_per_response.std()) / math.sqrt(n)
    if mean < 0 and mean < -2 * stderr:
        return (f"mean KL to the reference is negative ({mean:.4f} nats, stderr {stderr:.4f}): a bug sign (sampling "
                f"with top_k/top_p, logprobs without the temperature, or masks that miss tokens)")
    return None


def entropy_collapse(entropy: float, floor: float) -> str | None:
    if entropy < floor:
        return (f"policy entropy collapsed to {entropy:.4f} nats/token (< method.entropy_floor={floor}): samples are "
                f"nearly deterministic; lower the lr, raise the KL coefficient or add an entropy bonus")
    return None


def standard_error(values: torch.Tensor) -> float:
    """The standard error of the mean of ``values`` (unbiased std / sqrt(n)); 0 for fewer than 2 values."""
    if values.numel() < 2:
        return 0.0
    return float(values.std() / math.sqrt(values.numel()))


def reward_hacking(history: list[dict[str, float]], tolerance: float = 2.0) -> str | None:
    """The proxy reward at its best so far while the gold score fell below its best by more than ``tolerance``
    standard errors of the gold mean. ``history``: evaluations with ``step``, ``reward``, ``gold``, ``gold_stderr``."""
    if len(history) < 2:
        return None
    current = history[-1]
    best_gold = max(history[:-1], key=lambda h: h["gold"])
    proxy_rose = current["reward"] > best_gold["reward"]
    gold_fell = current["gold"] < best_gold["gold"] - tolerance * max(current["gold_stderr"], 1e-12)
    if proxy_rose and gold_fell:
        return (f"possible reward hacking: since step {int(best_gold['step'])} the proxy reward rose "
                f"({best_gold['reward']:.4f} -> {current['reward']:.4f}) while the gold score fell "
                f"({best_gold['gold']:.4f} -> {current['gold']:.4f}); keep the checkpoint of step "
                f"{int(best_gold['step'])}, raise the KL coefficient or improve the reward model")
    return None
