"""Unpaired feedback for KTO: ``{prompt, response, desirable}`` records (label rows, ratings by a threshold, or both
sides of pairs), tokenized as ``prompt + response + EOS`` with labels on the response. Each batch also carries the
mismatched sequences of the KL reference point: every prompt with the next example's response."""

from __future__ import annotations

from typing import Any

import torch

from rlhf.data.feedback import encode_pair, validate_unpaired
from rlhf.data.readers import DropReport
from rlhf.data.sampling import EpochIndexed
from rlhf.methods.data import RecordDataModule
from rlhf.methods.kto.config import KTODataConf
from rlhf.objectives import IGNORE_INDEX


class KTODataModule(RecordDataModule):
    schema = KTODataConf
    simulated_kind = "ratings"  # the simulated task's 1-5 ratings, split by data.desirable_threshold
    record_kind = "examples"
    response_fields = ("response",)

    def _validate(self, origin: str, rows: Any, report: DropReport) -> list[dict]:
        fmt = "ratings" if self.cfg.source.kind == "simulated" else self.cfg.source.format
        return validate_unpaired(rows, self.cfg.source.columns, origin, self.policy, report, fmt,
                                 self.cfg.desirable_threshold)

    def build_dataset(self, split: str) -> EpochIndexed:
        layout = self._layout
        items = [{"sequence": sequences[0], "prompt": sequences[0][:prompt_length],
                  "response": sequences[0][prompt_length:-1], "desirable": bool(record["desirable"])}
                 for record, sequences, prompt_length in self.encode(split, layout)]
        return EpochIndexed(items, lambda item, epoch, index: {**item, "index": index})

    @property
    def _layout(self) -> dict[str, list[int]]:
        return {"bos": [], "sep": [], "eos": [self.tokenizer.eos_token_id]}

    def _rows(self, sequences: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        length = max(len(s) for s, _ in sequences)
        input_ids = torch.full((len(sequences), length), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for i, (row, prompt_length) in enumerate(sequences):
            input_ids[i, :len(row)] = torch.tensor(row)
            labels[i, prompt_length:len(row)] = torch.tensor(row[prompt_length:])
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        """The examples (``input_ids``, ``labels`` on the response and EOS, ``attention_mask``, ``desirable``) and
        ``kl_*``: prompt i with the response of example i+1 (cyclically), cut from the left to fit, for z0."""
        own = [(s["sequence"], len(s["prompt"])) for s in samples]
        mismatched = []
        for i, sample in enumerate(samples):
            other = samples[(i + 1) % len(samples)]["response"]
            # (fits: the response and EOS fitted with its own prompt; this prompt is cut from the left as needed)
            (sequence,), _ = encode_pair(sample["prompt"], [other], self.cfg.max_length, self._layout)
            mismatched.append((sequence, len(sequence) - len(other) - 1))
        batch = self._rows(own)
        batch.update({f"kl_{k}": v for k, v in self._rows(mismatched).items()})
        batch["desirable"] = torch.tensor([s["desirable"] for s in samples])
        batch["index"] = torch.tensor([s["index"] for s in samples])
        return batch
