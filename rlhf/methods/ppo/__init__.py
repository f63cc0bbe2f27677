"""PPO: ``method=ppo`` (with ``data=prompts`` and a causal-LM ``model``)."""

from rlhf.methods.ppo.datamodule import PromptDataModule
from rlhf.methods.ppo.module import PPOModule

__all__ = ["PPOModule", "PromptDataModule"]
