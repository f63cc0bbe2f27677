"""Labelled documents for sequence classification: ``[CLS] text [SEP]`` (cut to ``data.max_length``) and the index
of the document's label in ``data.labels``."""

from __future__ import annotations

from typing import Any

import torch

from rlhf.data.sampling import EpochIndexed
from rlhf.errors import DataError
from rlhf.methods.classify.config import ClassifyDataConf
from rlhf.methods.data import TextDataModule


class ClassifyDataModule(TextDataModule):
    schema = ClassifyDataConf

    def build_dataset(self, split: str) -> EpochIndexed:
        docs, tok = self.splits[split], self.tokenizer
        index = {label: i for i, label in enumerate(self.cfg.labels)}
        for doc in docs:
            if "label" not in doc:
                raise DataError("method=classify needs a label per document: set data.source.label_column")
            if doc["label"] not in index:
                raise DataError(f"document {doc['id']!r} has label {doc['label']!r}, which is not in data.labels="
                                f"{list(self.cfg.labels)}; add it there (the model's outputs follow that list)")
        encoded = tok([d["text"] for d in docs], truncation=True, max_length=self.cfg.max_length)["input_ids"]
        items = [{"input_ids": ids, "label": index[doc["label"]]} for ids, doc in zip(encoded, docs)]
        return EpochIndexed(items, lambda item, epoch, i: {**item, "index": i})

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(s["input_ids"]) for s in samples)
        input_ids = torch.full((len(samples), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        for i, sample in enumerate(samples):
            input_ids[i, :len(sample["input_ids"])] = torch.tensor(sample["input_ids"])
            attention_mask[i, :len(sample["input_ids"])] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": torch.tensor([s["label"] for s in samples]),
                "index": torch.tensor([s["index"] for s in samples])}

    def data_metrics(self) -> dict[str, Any]:
        metrics = super().data_metrics()
        for split in ("train", "val", "test"):
            for label in self.cfg.labels:
                metrics[f"data/{split}/{label}"] = float(sum(d.get("label") == label for d in self.splits[split]))
        return metrics
