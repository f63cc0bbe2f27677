"""Encoder sequence classification on labelled text: ``method=classify``."""

from rlhf.methods import lazy_exports

_CLASSES = {"ClassifyDataModule": "datamodule", "ClassifyModule": "module"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
