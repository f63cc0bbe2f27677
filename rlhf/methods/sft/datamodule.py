"""Demonstrations for supervised fine-tuning: ``{prompt, response}`` records from prompt/response rows,
conversations, or the chosen side of any preference format (simulated feedback by default), tokenized as
``prompt + response + EOS`` with labels on the response (``rlhf.objectives.sft``), padded or packed."""

from __future__ import annotations

from typing import Any

import torch

from rlhf.data.feedback import validate_demonstrations
from rlhf.data.sampling import EpochIndexed
from rlhf.methods.data import RecordDataModule
from rlhf.methods.sft.config import SFTDataConf
from rlhf.objectives.sft import pack, response_mask


class SFTDataModule(RecordDataModule):
    schema = SFTDataConf
    simulated_kind = "pairs"  # simulated feedback's preferred responses are the demonstrations
    record_kind = "demonstrations"
    response_fields = ("response",)

    def _validate(self, origin: str, rows: Any, report) -> list[dict]:
        fmt = self.cfg.source.format
        return validate_demonstrations(rows, self.cfg.source.columns, origin, self.policy, report,
                                       "pairs" if self.cfg.source.kind == "simulated" else fmt, self.cfg.hindsight)

    def build_dataset(self, split: str) -> EpochIndexed:
        """``prompt + response + EOS`` per demonstration (the prompt cut from the left to fit), with a mask of the
        response and EOS tokens; packed into blocks with ``data.packing``."""
        layout = {"bos": [], "sep": [], "eos": [self.tokenizer.eos_token_id]}
        examples = [(sequences[0], response_mask(len(sequences[0]), prompt_length))
                    for _, sequences, prompt_length in self.encode(split, layout)]
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
