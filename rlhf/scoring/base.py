"""The Scorer interface: text in, one float per sample out. Reward models, gold scorers and plain Python functions
all implement it, so PPO rewards, corpus annotation and evaluation share one contract."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from rlhf.errors import ScorerError


@runtime_checkable
class Scorer(Protocol):
    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """One float per (prompt, completion); the prompt may be empty. Batched; owns its tokenizer if it has one."""


def _check_lengths(prompts: Sequence[str], completions: Sequence[str]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"score() got {len(prompts)} prompts but {len(completions)} completions")


class CheckedScorer:
    """The boundary every configured scorer is called through (``build_scorer`` wraps each): an exception inside the
    scorer, an output that is not a tensor or list of numbers, a wrong number of values, or a NaN/Inf value becomes a
    :class:`ScorerError` naming the scorer (``name``, its config key and kind), ``where`` (the caller's context) and
    the first offending text, instead of a raw traceback or a non-finite gradient several steps later."""

    def __init__(self, scorer: Scorer, name: str):
        self.scorer = scorer
        self.name = name

    def score(self, prompts: Sequence[str], completions: Sequence[str], where: str = "") -> torch.Tensor:
        _check_lengths(prompts, completions)
        at = f" ({where})" if where else ""
        first = repr(completions[0][:80]) if len(completions) else "(no text)"
        try:
            out = self.scorer.score(prompts, completions)
        except ScorerError as err:  # raised by a scorer of ours that knows the text (CallableScorer)
            raise ScorerError(f"scorer {self.name}: {err}{at}") from err
        except Exception as err:
            raise ScorerError(f"scorer {self.name} raised {type(err).__name__}: {err}{at}; batch of {len(completions)} "
                              f"texts, the first {first}") from err
        if not isinstance(out, torch.Tensor):
            try:
                out = torch.as_tensor(out, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ScorerError(f"scorer {self.name} returned {type(out).__name__}, not a tensor or list of numbers"
                                  f"{at}; score() must return one float per text") from err
        if out.numel() != len(completions):
            raise ScorerError(f"scorer {self.name} returned {out.numel()} values (shape {tuple(out.shape)}) for "
                              f"{len(completions)} texts{at}; score() must return one float per text (the first "
                              f"text: {first})")
        out = out.detach().reshape(-1).float()
        bad = (~torch.isfinite(out)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ScorerError(f"scorer {self.name} returned {float(out[i])} for text {i} ({completions[i][:80]!r}"
                              f"{', prompt ' + repr(prompts[i][:60]) if prompts[i] else ''}){at}; "
                              f"{len(bad)} of {len(completions)} values are not finite: scores must be finite")
        return out


class CallableScorer:
    """Wraps ``fn(prompt, completion) -> float`` (or ``fn(completion)`` with ``completion_only=True``)."""

    def __init__(self, fn: Callable[..., float], completion_only: bool = False):
        self.fn = fn
        self.completion_only = completion_only

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        _check_lengths(prompts, completions)
        values = []
        for prompt, completion in zip(prompts, completions):
            try:
                value = self.fn(completion) if self.completion_only else self.fn(prompt, completion)
                values.append(float(value))
            except Exception as err:
                raise ScorerError(f"{getattr(self.fn, '__name__', self.fn)} raised {type(err).__name__}: {err} on "
                                  f"the text {completion[:80]!r}") from err
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
