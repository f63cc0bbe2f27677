"""Scorers: text in, one float per sample out (see ``rlhf.scoring.base.Scorer``)."""

from rlhf.scoring.base import CallableScorer, Scorer, WeightedSum
from rlhf.scoring.reward_model import RewardModelScorer

__all__ = ["CallableScorer", "RewardModelScorer", "Scorer", "WeightedSum"]
