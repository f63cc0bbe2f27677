"""Preference-weighted pretraining (Korbak et al. 2023): ``method=pwp`` with
``method.objective=mle|filtering|conditional|unlikelihood|rwr|awr`` and ``data=bbc_news_scored``."""

from rlhf.methods.pwp.datamodule import ScoredLMDataModule
from rlhf.methods.pwp.module import PreferenceWeightedLMModule

__all__ = ["PreferenceWeightedLMModule", "ScoredLMDataModule"]
