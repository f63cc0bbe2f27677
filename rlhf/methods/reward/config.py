"""Schemas of reward modeling: ``method=reward`` and its feedback data (pairs or ratings)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlhf.config.common import OptimConf, RecordDataConf
from rlhf.config.fields import spec


@dataclass
class RewardDataConf(RecordDataConf):
    _target_: str = "rlhf.methods.reward.RewardDataModule"
    objective: str = spec("pairwise", choices=["pairwise", "rating"], help="Pairs or ratings (= method.objective).")
    rating_range: list[float] | None = spec(None, help="The rating scale [low, high], e.g. [1, 5]: a rating outside "
                                                       "it is an error naming the row (data.policy.out_of_range=drop "
                                                       "drops it). null: any finite rating.")
    padding_side: str = spec("right", choices=["right", "left"], help="Where batches are padded.")

    def check(self) -> list[tuple[str, str]]:
        problems = []
        scale = self.rating_range
        if scale is not None and (len(scale) != 2 or not all(math.isfinite(v) for v in scale) or scale[0] >= scale[1]):
            problems.append(("rating_range", f"={list(scale)} must be two finite numbers [low, high] with low < high"))
        fmt = self.source.format
        if (self.objective == "rating") != (fmt == "ratings") and fmt != "auto":
            wanted = "ratings" if self.objective == "rating" else "a pairwise format (pairs, hh, ultrafeedback, tldr, shp)"
            problems.append(("source.format", f"={fmt} does not fit data.objective={self.objective}: use {wanted}"))
        return problems


@dataclass
class RewardMethodConf(OptimConf):
    _target_: str = "rlhf.methods.reward.RewardModelModule"
    objective: str = spec("pairwise", choices=["pairwise", "rating"],
                          help="pairwise: Bradley-Terry on preferences; rating: MSE on normalised ratings.")
