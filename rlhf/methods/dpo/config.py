"""Schemas of direct preference optimisation: ``method=dpo`` and its preference pairs (``data=preference_pairs``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config.common import (
    RecordDataConf,
    SampledPolicyConf,
)
from rlhf.config.fields import spec
from rlhf.objectives.dpo import LOSSES


@dataclass
class DPODataConf(RecordDataConf):
    _target_: str = "rlhf.methods.dpo.DPODataModule"

    def check(self) -> list[tuple[str, str]]:
        if self.source.format == "ratings":
            return [("source.format", "=ratings holds no pairs: DPO needs a pair format (pairs, hh, ultrafeedback, "
                                      "tldr, shp)")]
        return []


@dataclass
class DPOMethodConf(SampledPolicyConf):
    _target_: str = "rlhf.methods.dpo.DPOModule"
    loss: str = spec("sigmoid", choices=list(LOSSES),
                     help="sigmoid (DPO; cDPO with label_smoothing), robust (rDPO: unbiased under label noise "
                          "label_smoothing), ipo (per-token average log-probs), hinge (SLiC).")
    beta: float = spec(0.1, gt=0.0, help="Inverse temperature: how far from the reference the policy may move.")
    label_smoothing: float = spec(0.0, ge=0.0, lt=0.5, help="sigmoid: conservative DPO's ε; robust: the assumed "
                                                            "share of flipped labels.")
    reference_free: bool = spec(False, help="Drop the reference terms (no reference model at all).")
    precompute_reference: bool = spec(False, help="Compute the reference log-probs of every pair once before "
                                                  "training (kept in the checkpoint, so a resume does not recompute "
                                                  "them); no reference model is held during training.")
    rpo_alpha: float = spec(0.0, ge=0.0, help="Add alpha x the NLL per token of the chosen responses (RPO); 0: off.")

    def check(self) -> list[tuple[str, str]]:
        if self.label_smoothing and self.loss in ("ipo", "hinge"):
            return [("label_smoothing", f"={self.label_smoothing} applies to loss=sigmoid or robust, not {self.loss}")]
        return []
