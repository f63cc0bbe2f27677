"""Reward modeling: ``method=reward`` with ``method.objective=pairwise|rating``."""

from rlhf.methods import lazy_exports

_CLASSES = {"RewardDataModule": "datamodule", "RewardModelModule": "module"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
