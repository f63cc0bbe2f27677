"""Reward-model data: pairwise preferences or ratings from files, HF datasets or simulated feedback, validated with
an explicit policy per malformed case (see ``rlhf.data.feedback``), tokenized so every response keeps its tail."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

from rlhf.data.feedback import sequence_layout, validate_records
from rlhf.data.formats import prompt_key
from rlhf.data.readers import DropReport
from rlhf.data.sampling import EpochIndexed
from rlhf.errors import DataError
from rlhf.methods.data import RecordDataModule
from rlhf.methods.reward.config import RewardDataConf


class RewardDataModule(RecordDataModule):
    schema = RewardDataConf

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.kind = self.record_kind
        self.simulated_kind = self.kind
        self.rating_stats = (0.0, 1.0)

    @property
    def record_kind(self) -> str:
        return "pairs" if self.cfg.objective == "pairwise" else "ratings"

    @property
    def response_fields(self) -> tuple[str, ...]:
        return ("chosen", "rejected") if self.record_kind == "pairs" else ("response",)

    # ---- records -------------------------------------------------------------------------------------------------
    @property
    def record_format(self) -> str:
        """``data.source.format``, with ``auto`` meaning the objective's own (pairs or ratings)."""
        fmt = self.cfg.source.format
        return self.kind if fmt == "auto" else fmt

    def _validate(self, origin: str, rows: Any, report: DropReport) -> list[dict]:
        return validate_records(rows, self.kind, self.cfg.source.columns, origin, self.policy, report,
                                self.cfg.rating_range, self.record_format)

    @cached_property
    def splits(self) -> dict[str, list[dict]]:
        splits = super().splits
        if self.kind == "ratings":
            self.rating_stats = rating_stats(splits["train"], self.origins["train"])
        return splits

    # ---- tokenization ----------------------------------------------------------------------------------------------
    @cached_property
    def layout(self) -> dict[str, list[int]]:
        return sequence_layout(self.tokenizer)

    def build_dataset(self, split: str) -> EpochIndexed:
        items = []
        for record, sequences, _ in self.encode(split, self.layout):
            item = {"sequences": sequences}
            if self.kind == "pairs":
                item["margin"] = record["margin"]
                item["gold"] = (record.get("gold_chosen"), record.get("gold_rejected"))
            else:
                mean, std = self.rating_stats
                item["target"] = (record["rating"] - mean) / std
                item["rating"] = record["rating"]
                item["gold"] = (record.get("gold"), None)
            items.append(item)
        return EpochIndexed(items, lambda item, epoch, index: {**item, "index": index})

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        rows = [seq for s in samples for seq in s["sequences"]]
        if self.kind == "pairs":  # chosen rows first, then rejected rows
            rows = [s["sequences"][0] for s in samples] + [s["sequences"][1] for s in samples]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(length - len(row), length) if self.cfg.padding_side == "left" else slice(0, len(row))
            input_ids[i, span] = torch.tensor(row)
            attention_mask[i, span] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "index": torch.tensor([s["index"] for s in samples])}
        nan = float("nan")
        batch["gold"] = torch.tensor([[nan if g is None else g for g in s["gold"]] for s in samples],
                                     dtype=torch.float32)
        if self.kind == "pairs":
            batch["margin"] = torch.tensor([s["margin"] for s in samples], dtype=torch.float32)
        else:
            batch["target"] = torch.tensor([s["target"] for s in samples], dtype=torch.float32)
            batch["rating"] = torch.tensor([s["rating"] for s in samples], dtype=torch.float32)
        return batch


def rating_stats(records: list[dict], origin: str) -> tuple[float, float]:
    """Mean and standard deviation of the training ratings (the regression targets are ``(rating - mean) / std``);
    a scale on which they are not finite numbers (e.g. a rating of 1e308) is a DataError naming the extreme rating."""
    ratings = torch.tensor([r["rating"] for r in records], dtype=torch.float64)
    mean = ratings.mean()
    std = ratings.std() if len(ratings) > 1 else torch.tensor(1.0, dtype=torch.float64)
    if not (torch.isfinite(mean) and torch.isfinite(std) and torch.isfinite((ratings - mean) / std.clamp(min=1e-6)).all()):
        extreme = records[int(ratings.abs().argmax())]
        raise DataError(f"{origin}: the training ratings cannot be normalised (mean {float(mean)}, std {float(std)}): "
                        f"rating {extreme['rating']:g} (prompt {prompt_key(extreme['prompt'])[:40]!r}) is far off any scale; fix "
                        f"it, or set data.rating_range=[low,high] to refuse or drop ratings off your scale")
    return float(mean), float(std.clamp(min=1e-6))
