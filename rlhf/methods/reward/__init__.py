"""Reward modeling: ``method=reward`` with ``method.objective=pairwise|rating``."""

from rlhf.methods.reward.datamodule import RewardDataModule
from rlhf.methods.reward.module import RewardModelModule

__all__ = ["RewardDataModule", "RewardModelModule"]
