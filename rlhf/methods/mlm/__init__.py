"""Masked-LM pretraining (BERT-style): ``method=mlm``."""

from rlhf.methods.mlm.datamodule import MaskedLMDataModule
from rlhf.methods.mlm.module import MaskedLMModule

__all__ = ["MaskedLMDataModule", "MaskedLMModule"]
