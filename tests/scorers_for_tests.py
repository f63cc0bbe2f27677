"""Misbehaving scorers that tests reach through ``method.reward.kind=callable`` (``tests.scorers_for_tests.<name>``)."""

import torch


def length(completion: str) -> float:
    return float(len(completion.split()))


def raises(completion: str) -> float:
    raise KeyError("sentiment")


def nan_for_long(completion: str) -> float:
    return float("nan") if len(completion) > 3 else 0.0


class ReturnsList:
    def score(self, prompts, completions):
        return [float(len(c)) for c in completions]


class ReturnsText:
    def score(self, prompts, completions):
        return "good"


class ReturnsTooFew:
    def score(self, prompts, completions):
        return torch.zeros(len(completions) - 1)
