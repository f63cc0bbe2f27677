"""Supervised fine-tuning on demonstrations: ``method=sft``."""

from rlhf.methods import lazy_exports

_CLASSES = {"SFTDataModule": "datamodule", "SFTModule": "module"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
