"""Preference-weighted pretraining (Korbak et al. 2023): ``method=pwp`` with
``method.objective=mle|filtering|conditional|unlikelihood|rwr|awr`` and ``data=bbc_news_scored``."""

from rlhf.methods import lazy_exports

_CLASSES = {"PreferenceWeightedLMModule": "module", "ScoredLMDataModule": "datamodule"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
