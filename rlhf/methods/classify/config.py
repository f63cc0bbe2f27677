"""Schemas of sequence classification: ``method=classify`` and its labelled text (``data=bbc_topics``)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from rlhf.config.common import LoaderConf, OptimConf, SourceConf, SplitConf
from rlhf.config.fields import spec


@dataclass
class ClassifyDataConf:
    _target_: str = "rlhf.methods.classify.ClassifyDataModule"
    source: SourceConf = spec(factory=SourceConf, help="Labelled documents (data.source.label_column names the "
                                                       "label; bbc_news: topic).")
    labels: list[str] = spec(MISSING, help="The classes, in the order of the model's outputs (id2label); a "
                                           "document with another label is an error naming its row.")
    split: SplitConf = spec(factory=SplitConf, help="Deterministic train/val/test split by document hash.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Documents per batch.")
    max_length: int = spec(256, ge=8, help="Tokens per document, [CLS] and [SEP] included (longer ones are cut).")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")


@dataclass
class ClassifyMethodConf(OptimConf):
    _target_: str = "rlhf.methods.classify.ClassifyModule"
    labels: list[str] = spec(MISSING, help="The classes (set from data.labels).")
    label_smoothing: float = spec(0.0, ge=0.0, lt=1.0, help="Cross-entropy label smoothing.")
