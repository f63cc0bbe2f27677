"""Schemas of masked-LM pretraining: ``method=mlm`` and its data (``data=bbc_news_mlm`` and friends)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from rlhf.config.common import LoaderConf, OptimConf, SourceConf, SplitConf
from rlhf.config.fields import spec


@dataclass
class MLMDataConf:
    _target_: str = "rlhf.methods.mlm.MaskedLMDataModule"
    source: SourceConf = spec(factory=SourceConf, help="Where the text comes from.")
    split: SplitConf = spec(factory=SplitConf, help="Deterministic train/val/test split.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Batching.")
    block_size: int = spec(128, ge=8, help="Tokens per sequence, including [CLS] and [SEP].")
    packing: bool = spec(True, help="Concatenate documents and cut fixed blocks (else one padded document a row).")
    mask_prob: float = spec(0.15, gt=0.0, le=1.0, help="Share of maskable tokens selected for prediction.")
    mask_replace_prob: float = spec(0.8, ge=0.0, le=1.0, help="Of the selected tokens: share replaced by [MASK].")
    random_replace_prob: float = spec(0.1, ge=0.0, le=1.0, help="Of the selected tokens: share replaced at random.")
    whole_word_mask: bool = spec(False, help="Select whole words: all pieces of a word are masked together.")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")

    def check(self) -> list[tuple[str, str]]:
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            return [("mask_replace_prob", f"+ random_replace_prob = "
                     f"{self.mask_replace_prob + self.random_replace_prob:g} must be <= 1 (the rest keeps the token)")]
        return []


@dataclass
class MLMMethodConf(OptimConf):
    _target_: str = "rlhf.methods.mlm.MaskedLMModule"
