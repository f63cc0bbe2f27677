"""Schemas of KTO: ``method=kto`` and its unpaired feedback (``data=unpaired_feedback``)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from rlhf.config.common import FeedbackPolicyConf, FeedbackSourceConf, LoaderConf, SampledPolicyConf, SplitConf
from rlhf.config.fields import spec


@dataclass
class KTODataConf:
    _target_: str = "rlhf.methods.kto.KTODataModule"
    source: FeedbackSourceConf = spec(factory=FeedbackSourceConf,
                                      help="Unpaired feedback: prompt/response(or completion)/label rows (format "
                                           "auto), ratings (format ratings, with desirable_threshold), or any pair "
                                           "format (chosen desirable, rejected undesirable); simulated: the "
                                           "simulated task's ratings.")
    desirable_threshold: float = spec(4.0, help="Ratings at or above it are desirable, below it undesirable.")
    split: SplitConf = spec(factory=SplitConf, help="Hash split by prompt when the source is a single file.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Examples per batch (>= 2: the reference point pairs each "
                                                       "prompt with another example's response).")
    max_length: int = spec(128, ge=8, help="Tokens of prompt + response + EOS; the prompt is cut from the left.")
    policy: FeedbackPolicyConf = spec(factory=FeedbackPolicyConf, help="What happens to each malformed case.")
    strict: bool = spec(False, help="Turn every drop into an error.")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")

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
