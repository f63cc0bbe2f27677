"""Schemas of supervised fine-tuning: ``method=sft`` and its demonstrations (``data=demonstrations``)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from rlhf.config.common import FeedbackPolicyConf, FeedbackSourceConf, LoaderConf, SampledPolicyConf, SplitConf
from rlhf.config.fields import spec


@dataclass
class SFTDataConf:
    _target_: str = "rlhf.methods.sft.SFTDataModule"
    source: FeedbackSourceConf = spec(factory=FeedbackSourceConf,
                                      help="Where the demonstrations come from: prompt/response rows, conversations "
                                           "(a messages column), or the chosen side of any pair format; simulated: "
                                           "the preferred responses of the simulated feedback task.")
    split: SplitConf = spec(factory=SplitConf, help="Hash split by prompt when the source is a single file.")
    loader: LoaderConf = spec(factory=LoaderConf, help="Batching (examples, or packed blocks, per batch).")
    max_length: int = spec(128, ge=8, help="Tokens per example (prompt + response + EOS); the prompt is cut from "
                                           "the left to fit.")
    packing: bool = spec(False, help="Lay several examples end to end in blocks of max_length tokens; each attends "
                                     "only to itself (a block-diagonal mask, positions restart), so the loss is the "
                                     "same as unpacked. false: one padded example per row.")
    policy: FeedbackPolicyConf = spec(factory=FeedbackPolicyConf, help="What happens to each malformed case.")
    strict: bool = spec(False, help="Turn every drop into an error.")
    cache_dir: str = spec(MISSING, help="Where trained tokenizers are cached.")

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
