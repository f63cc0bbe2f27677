"""PPO: ``method=ppo`` (with ``data=prompts`` and a causal-LM ``model``)."""

from rlhf.methods import lazy_exports

_CLASSES = {"PPOModule": "module", "PromptDataModule": "datamodule"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
