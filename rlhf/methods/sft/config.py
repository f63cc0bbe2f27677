"""Schemas of supervised fine-tuning: ``method=sft`` and its demonstrations (``data=demonstrations``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config.common import (
    RecordDataConf,
    SampledPolicyConf,
)
from rlhf.config.fields import spec


@dataclass
class SFTDataConf(RecordDataConf):
    _target_: str = "rlhf.methods.sft.SFTDataModule"
    packing: bool = spec(False, help="Lay several examples end to end in blocks of max_length tokens; each attends "
                                     "only to itself (a block-diagonal mask, positions restart), so the loss is the "
                                     "same as unpacked. false: one padded example per row.")
    hindsight: bool = spec(False, help="rlhf-label corrections: put the original answer and the critique in the "
                                       "prompt of the improved response (Chain of Hindsight style); false: SFT on "
                                       "prompt -> improved response.")

    def check(self) -> list[tuple[str, str]]:
        if self.source.format == "ratings":
            return [("source.format", "=ratings holds no demonstrations: use prompt/response rows (format auto), "
                                      "conversations, or a pair format (its chosen responses)")]
        return []


@dataclass
class SFTMethodConf(SampledPolicyConf):
    _target_: str = "rlhf.methods.sft.SFTModule"
    train_on_prompt: bool = spec(False, help="Also train on the prompt tokens (false: the loss reads the response "
                                             "and its EOS only).")
