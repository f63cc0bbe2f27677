"""Gold scorers that ship offline inside PyPI wheels: the stand-in for human judgement in simulated feedback.

- :class:`VaderSentiment`: VADER's compound sentiment of the completion, in [-1, 1] (higher = more positive).
- :class:`OffensiveLanguage`: probability that the completion is offensive (``alt-profanity-check``), in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlhf.scoring.base import _check_lengths


def _need(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"this scorer needs the '{package}' package: pip install -e '.[offline]'") from err


class VaderSentiment:
    """Compound sentiment of the completion (the prompt is ignored), in [-1, 1]."""

    name = "vader"

    def __init__(self):
        self.analyzer = _need("vaderSentiment.vaderSentiment", "vaderSentiment").SentimentIntensityAnalyzer()

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        _check_lengths(prompts, completions)
        return torch.tensor([self.analyzer.polarity_scores(c)["compound"] for c in completions], dtype=torch.float32)


class OffensiveLanguage:
    """Probability that the completion is offensive language (the prompt is ignored), in [0, 1]."""

    name = "offensive"

    def __init__(self):
        self.model = _need("profanity_check", "alt-profanity-check")

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        _check_lengths(prompts, completions)
        if not completions:
            return torch.zeros(0)
        return torch.tensor(self.model.predict_prob(list(completions)), dtype=torch.float32)


GOLD_SCORERS = {"vader": VaderSentiment, "offensive": OffensiveLanguage}


def gold_scorer(name: str):
    try:
        return GOLD_SCORERS[name]()
    except KeyError:
        raise ValueError(f"unknown gold scorer '{name}'; known: {', '.join(GOLD_SCORERS)}") from None
