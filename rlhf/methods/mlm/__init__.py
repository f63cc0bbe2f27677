"""Masked-LM pretraining (BERT-style): ``method=mlm``."""

from rlhf.methods import lazy_exports

_CLASSES = {"MaskedLMDataModule": "datamodule", "MaskedLMModule": "module"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
