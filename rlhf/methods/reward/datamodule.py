"""Reward-model data: pairwise preferences or ratings from files, HF datasets or simulated feedback, validated with
an explicit policy per malformed case (see ``rlhf.data.feedback``), tokenized so every response keeps its tail."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

from rlhf.data.feedback import Policy, encode_pair, sequence_layout, validate_records
from rlhf.data.formats import prompt_key, render_prompt
from rlhf.data.readers import DropReport
from rlhf.data.sampling import EpochIndexed
from rlhf.errors import DataError
from rlhf.methods.base import RecordDataModule
from rlhf.methods.reward.config import RewardDataConf


class RewardDataModule(RecordDataModule):
    schema = RewardDataConf

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.kind = self.record_kind
        self.simulated_kind = self.kind
        self.policy = Policy(self.cfg.policy, self.cfg.strict)
        self.rating_stats = (0.0, 1.0)
        self.truncated: dict[str, int] = {}

    @property
    def record_kind(self) -> str:
        return "pairs" if self.cfg.objective == "pairwise" else "ratings"

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

    def tokenizer_texts(self) -> list[str]:
        texts = []
        for record in self.splits["train"]:
            texts.append(render_prompt(None, record["prompt"]))
            texts.extend([record["chosen"], record["rejected"]] if self.kind == "pairs" else [record["response"]])
        return [t for t in texts if t]

    # ---- tokenization ----------------------------------------------------------------------------------------------
    @cached_property
    def layout(self) -> dict[str, list[int]]:
        return sequence_layout(self.tokenizer)

    def build_dataset(self, split: str) -> EpochIndexed:
        records = self.splits[split]
        tok = self.tokenizer
        fields = ("chosen", "rejected") if self.kind == "pairs" else ("response",)
        encoded = {f: tok([r[f] for r in records], add_special_tokens=False)["input_ids"] for f in fields}
        encoded["prompt"] = tok([render_prompt(tok, r["prompt"]) for r in records],  # chat template for messages
                                add_special_tokens=False)["input_ids"]
        report = self.reports[split]
        items, truncated = [], 0
        for i, record in enumerate(records):
            where = f"{split} record {i + 1} (prompt {prompt_key(record['prompt'])[:40]!r})"
            out = encode_pair(encoded["prompt"][i], [encoded[f][i] for f in fields], self.cfg.max_length, self.layout)
            if out is None:
                self.policy.handle("too_long", where, f"a response does not fit data.max_length={self.cfg.max_length} "
                                   "even without its prompt", report)
                continue
            sequences, was_truncated = out
            if was_truncated:
                if self.policy.rules["too_long"] != "truncate_prompt":
                    self.policy.handle("too_long", where, f"longer than data.max_length={self.cfg.max_length}", report)
                    continue
                truncated += 1
            if self.kind == "pairs" and sequences[0] == sequences[1]:
                self.policy.handle("identical_after_truncation", where, "chosen and rejected have the same tokens",
                                   report)
                continue
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
        self.truncated[split] = truncated
        if not items:
            raise DataError(f"the {split} split has no usable {self.kind} after tokenization ({report.summary()})")
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

    def data_metrics(self) -> dict[str, float]:
        metrics = super().data_metrics()
        for name, report in self.reports.items():
            metrics.update(report.metrics(prefix=f"data/{name}"))
            metrics[f"data/{name}_truncated_prompt"] = float(self.truncated.get(name, 0))
        return metrics


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
