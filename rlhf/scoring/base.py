"""The Scorer interface: text in, one float per sample out. Reward models, gold scorers and plain Python functions
all implement it, so PPO rewards, corpus annotation and evaluation share one contract."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Scorer(Protocol):
    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """One float per (prompt, completion); the prompt may be empty. Batched; owns its tokenizer if it has one."""


def _check_lengths(prompts: Sequence[str], completions: Sequence[str]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"score() got {len(prompts)} prompts but {len(completions)} completions")


class CallableScorer:
    """Wraps ``fn(prompt, completion) -> float`` (or ``fn(completion)`` with ``completion_only=True``)."""

    def __init__(self, fn: Callable[..., float], completion_only: bool = False):
        self.fn = fn
        self.completion_only = completion_only

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        _check_lengths(prompts, completions)
        if self.completion_only:
            values = [float(self.fn(c)) for c in completions]
        else:
            values = [float(self.fn(p, c)) for p, c in zip(prompts, completions)]
        return torch.tensor(values, dtype=torch.float32)


class WeightedSum:
    """``sum_i w_i * scorer_i``: e.g. a reward model plus a length penalty."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float]):
        if len(scorers) != len(weights) or not scorers:
            raise ValueError("WeightedSum needs one weight per scorer (and at least one scorer)")
        self.scorers = list(scorers)
        self.weights = [float(w) for w in weights]

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        total = torch.zeros(len(completions))
        for scorer, weight in zip(self.scorers, self.weights):
            total += weight * scorer.score(prompts, completions).float()
        return total
