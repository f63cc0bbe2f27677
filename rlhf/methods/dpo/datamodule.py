"""Preference pairs for DPO: the records of every pair format (``rlhf.data.formats``), tokenized as
``prompt + chosen + EOS`` and ``prompt + rejected + EOS`` with the *same* prompt token ids (cut from the left so both
responses keep every token), labels on the responses only."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from rlhf.data.feedback import validate_records
from rlhf.data.readers import DropReport
from rlhf.data.sampling import EpochIndexed
from rlhf.methods.data import RecordDataModule
from rlhf.methods.dpo.config import DPODataConf
from rlhf.objectives import IGNORE_INDEX


class DPODataModule(RecordDataModule):
    schema = DPODataConf
    simulated_kind = "pairs"
    record_kind = "pairs"

    def _validate(self, origin: str, rows: Any, report: DropReport) -> list[dict]:
        fmt = self.cfg.source.format
        return validate_records(rows, "pairs", self.cfg.source.columns, origin, self.policy, report, None,
                                "pairs" if fmt == "auto" else fmt)

    def build_dataset(self, split: str) -> EpochIndexed:
        layout = {"bos": [], "sep": [], "eos": [self.tokenizer.eos_token_id]}
        items = [{"chosen": sequences[0], "rejected": sequences[1], "prompt_len": prompt_length,
                  "gold": (record.get("gold_chosen"), record.get("gold_rejected"))}
                 for record, sequences, prompt_length in self.encode(split, layout)]
        return EpochIndexed(items, lambda item, epoch, index: {**item, "index": index})

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        """Rows: every chosen sequence, then every rejected one, right-padded; ``labels`` are the response and EOS
        tokens (``IGNORE_INDEX`` on the prompt and padding)."""
        rows = [s["chosen"] for s in samples] + [s["rejected"] for s in samples]
        prompt_lens = [s["prompt_len"] for s in samples] * 2
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (row, prompt_len) in enumerate(zip(rows, prompt_lens)):
            input_ids[i, :len(row)] = torch.tensor(row)
            labels[i, prompt_len:len(row)] = torch.tensor(row[prompt_len:])
            attention_mask[i, :len(row)] = 1
        nan = float("nan")
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "index": torch.tensor([s["index"] for s in samples]),
                "gold": torch.tensor([[nan if g is None else g for g in s["gold"]] for s in samples])}

    def reference_loader(self, split: str) -> DataLoader:
        """Every pair of ``split`` in order, on every rank (the precomputed reference needs them all)."""
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        dataset = self.datasets[split]
        batch_size = self.cfg.loader.eval_batch_size or self.cfg.loader.batch_size
        return DataLoader([dataset[i] for i in range(len(dataset))], batch_size=batch_size, shuffle=False,
                          collate_fn=self.collate)
