"""Preference pairs for DPO: the records of every pair format (``rlhf.data.formats``), tokenized as
``prompt + chosen + EOS`` and ``prompt + rejected + EOS`` with the *same* prompt token ids (cut from the left so both
responses keep every token), labels on the responses only."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from rlhf.data.feedback import Policy, encode_pair, validate_records
from rlhf.data.formats import prompt_key, render_prompt
from rlhf.data.readers import DropReport
from rlhf.data.sampling import EpochIndexed
from rlhf.errors import DataError
from rlhf.methods.base import SPLITS, RecordDataModule
from rlhf.methods.dpo.config import DPODataConf
from rlhf.objectives import IGNORE_INDEX


class DPODataModule(RecordDataModule):
    schema = DPODataConf
    simulated_kind = "pairs"
    record_kind = "pairs"

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.policy = Policy(self.cfg.policy, self.cfg.strict)
        self.truncated: dict[str, int] = {}

    def _validate(self, origin: str, rows: Any, report: DropReport) -> list[dict]:
        fmt = self.cfg.source.format
        return validate_records(rows, "pairs", self.cfg.source.columns, origin, self.policy, report, None,
                                "pairs" if fmt == "auto" else fmt)

    def tokenizer_texts(self) -> list[str]:
        texts = []
        for record in self.splits["train"]:
            texts += [render_prompt(None, record["prompt"]), record["chosen"], record["rejected"]]
        return [t for t in texts if t]

    def eval_prompts(self, split: str, count: int) -> list[str]:
        """Held-out prompts (rendered as the model sees them) for sampling during evaluation."""
        return [render_prompt(self.tokenizer, r["prompt"]) for r in self.splits[split][:count]]

    # ---- tokenization ----------------------------------------------------------------------------------------------
    def build_dataset(self, split: str) -> EpochIndexed:
        records, tok = self.splits[split], self.tokenizer
        prompts = tok([render_prompt(tok, r["prompt"]) for r in records], add_special_tokens=False)["input_ids"]
        chosen = tok([r["chosen"] for r in records], add_special_tokens=False)["input_ids"]
        rejected = tok([r["rejected"] for r in records], add_special_tokens=False)["input_ids"]
        layout = {"bos": [], "sep": [], "eos": [tok.eos_token_id]}
        report, items, truncated = self.reports[split], [], 0
        for i, record in enumerate(records):
            where = f"{split} record {i + 1} (prompt {prompt_key(record['prompt'])[:40]!r})"
            out = encode_pair(prompts[i], [chosen[i], rejected[i]], self.cfg.max_length, layout)
            if out is None:
                self.policy.handle("too_long", where, f"a response does not fit data.max_length={self.cfg.max_length}"
                                   " even without its prompt", report)
                continue
            sequences, was_truncated = out
            if was_truncated:
                if self.policy.rules["too_long"] != "truncate_prompt":
                    self.policy.handle("too_long", where, f"longer than data.max_length={self.cfg.max_length}", report)
                    continue
                truncated += 1
            if sequences[0] == sequences[1]:
                self.policy.handle("identical_after_truncation", where, "chosen and rejected have the same tokens",
                                   report)
                continue
            prompt_len = len(sequences[0]) - len(chosen[i]) - 1  # the same prompt ids start both sequences
            items.append({"chosen": sequences[0], "rejected": sequences[1], "prompt_len": prompt_len,
                          "gold": (record.get("gold_chosen"), record.get("gold_rejected"))})
        self.truncated[split] = truncated
        if not items:
            raise DataError(f"the {split} split has no usable pairs after tokenization ({report.summary()})")
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

    def data_metrics(self) -> dict[str, float]:
        metrics = super().data_metrics()
        for name in SPLITS:
            metrics.update(self.reports[name].metrics(prefix=f"data/{name}"))
            metrics[f"data/{name}_truncated_prompt"] = float(self.truncated.get(name, 0))
        return metrics
