"""Schemas of KTO: ``method=kto`` and its unpaired feedback (``data=unpaired_feedback``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config.common import (
    RecordDataConf,
    SampledPolicyConf,
)
from rlhf.config.fields import spec


@dataclass
class KTODataConf(RecordDataConf):
    _target_: str = "rlhf.methods.kto.KTODataModule"
    desirable_threshold: float = spec(4.0, help="Ratings at or above it are desirable, below it undesirable.")

    def check(self) -> list[tuple[str, str]]:
        if self.loader.batch_size < 2:
            return [("loader.batch_size", "must be >= 2: KTO's reference point pairs each prompt with another "
                                          "example's response")]
        return []


@dataclass
class KTOMethodConf(SampledPolicyConf):
    _target_: str = "rlhf.methods.kto.KTOModule"
    beta: float = spec(0.1, gt=0.0, help="Inverse temperature of the value function.")
    desirable_weight: float = spec(1.0, gt=0.0, help="λ_D: weight of the desirable examples' loss.")
    undesirable_weight: float = spec(1.0, gt=0.0, help="λ_U: weight of the undesirable examples' loss (keep "
                                                       "λ_D n_D / (λ_U n_U) in [1, 4/3]; the run warns outside).")
    balance_weights: bool = spec(False, help="When the training labels put λ_D n_D / (λ_U n_U) outside [1, 4/3], "
                                             "train with λ_D = λ_U n_U / n_D (ratio 1) instead of warning; the weight "
                                             "used is printed.")
