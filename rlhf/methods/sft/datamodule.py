"""Demonstrations for supervised fine-tuning: ``{prompt, response}`` records from prompt/response rows,
conversations, or the chosen side of any preference format (simulated feedback by default), tokenized as
``prompt + response + EOS`` with labels on the response (``rlhf.objectives.sft``), padded or packed."""

from __future__ import annotations

from typing import Any

import torch

from rlhf.data.feedback import Policy, validate_demonstrations
from rlhf.data.formats import prompt_key, render_prompt
from rlhf.data.sampling import EpochIndexed
from rlhf.errors import DataError
from rlhf.methods.base import SPLITS, RecordDataModule
from rlhf.methods.sft.config import SFTDataConf
from rlhf.objectives.sft import pack, sft_example


class SFTDataModule(RecordDataModule):
    schema = SFTDataConf
    simulated_kind = "pairs"  # simulated feedback's preferred responses are the demonstrations
    record_kind = "demonstrations"

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.policy = Policy(self.cfg.policy, self.cfg.strict)
        self.truncated: dict[str, int] = {}

    def _validate(self, origin: str, rows: Any, report) -> list[dict]:
        fmt = self.cfg.source.format
        return validate_demonstrations(rows, self.cfg.source.columns, origin, self.policy, report,
                                       "pairs" if self.cfg.source.kind == "simulated" else fmt)

    def tokenizer_texts(self) -> list[str]:
        texts = []
        for record in self.splits["train"]:
            texts += [render_prompt(None, record["prompt"]), record["response"]]
        return [t for t in texts if t]

    def eval_prompts(self, split: str, count: int) -> list[str]:
        """Held-out prompts (rendered as the model sees them) for sampling during evaluation."""
        return [render_prompt(self.tokenizer, r["prompt"]) for r in self.splits[split][:count]]

    # ---- tokenization ----------------------------------------------------------------------------------------------
    def build_dataset(self, split: str) -> EpochIndexed:
        records, tok = self.splits[split], self.tokenizer
        prompts = tok([render_prompt(tok, r["prompt"]) for r in records], add_special_tokens=False)["input_ids"]
        responses = tok([r["response"] for r in records], add_special_tokens=False)["input_ids"]
        report, examples, truncated = self.reports[split], [], 0
        for i, record in enumerate(records):
            where = f"{split} record {i + 1} (prompt {prompt_key(record['prompt'])[:40]!r})"
            out = sft_example(prompts[i], responses[i], tok.eos_token_id, self.cfg.max_length)
            if out is None:
                self.policy.handle("too_long", where, f"the response does not fit data.max_length="
                                   f"{self.cfg.max_length} even without its prompt", report)
                continue
            ids, response_mask, was_truncated = out
            if was_truncated:
                if self.policy.rules["too_long"] != "truncate_prompt":
                    self.policy.handle("too_long", where, f"longer than data.max_length={self.cfg.max_length}", report)
                    continue
                truncated += 1
            examples.append((ids, response_mask))
        self.truncated[split] = truncated
        if not examples:
            raise DataError(f"the {split} split has no usable demonstrations after tokenization ({report.summary()})")
        if self.cfg.packing:
            items = pack(examples, self.cfg.max_length)
        else:
            items = [{"input_ids": ids, "response_mask": mask, "segment": [0] * len(ids),
                      "position_ids": list(range(len(ids)))} for ids, mask in examples]
        return EpochIndexed(items, lambda item, epoch, index: {**item, "index": index})

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        """Right-padded rows: ``input_ids``, ``response_mask`` (the response and EOS tokens), ``attention_mask`` (real
        tokens), ``position_ids`` and ``segment`` (the example of each token, -1 on padding; the module turns it into
        the block-diagonal attention of packed rows)."""
        length = max(len(s["input_ids"]) for s in samples)
        batch = {"input_ids": torch.full((len(samples), length), self.tokenizer.pad_token_id, dtype=torch.long),
                 "response_mask": torch.zeros((len(samples), length), dtype=torch.long),
                 "attention_mask": torch.zeros((len(samples), length), dtype=torch.long),
                 "position_ids": torch.zeros((len(samples), length), dtype=torch.long),
                 "segment": torch.full((len(samples), length), -1, dtype=torch.long)}
        for i, sample in enumerate(samples):
            n = len(sample["input_ids"])
            for key in ("input_ids", "response_mask", "position_ids", "segment"):
                batch[key][i, :n] = torch.tensor(sample[key])
            batch["attention_mask"][i, :n] = 1
        batch["index"] = torch.tensor([s["index"] for s in samples])
        return batch

    def data_metrics(self) -> dict[str, float]:
        metrics = super().data_metrics()
        for name in SPLITS:
            metrics.update(self.reports[name].metrics(prefix=f"data/{name}"))
            metrics[f"data/{name}_truncated_prompt"] = float(self.truncated.get(name, 0))
        return metrics
