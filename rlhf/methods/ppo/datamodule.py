"""Prompts for PPO: from the shipped corpus (the opening words of its sentences) or from a file / HF dataset with a
prompt column, split by document so evaluation prompts come from texts never trained on; left-padded batches."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from rlhf.data.sampling import EpochIndexed
from rlhf.data.simulated_feedback import sentences
from rlhf.errors import DataError
from rlhf.methods.data import TextDataModule
from rlhf.methods.ppo.config import PromptDataConf
from rlhf.models.policy import left_pad


class PromptDataModule(TextDataModule):
    """``prompt_from=sentences``: each document gives up to ``max_prompts_per_document`` prompts, the first
    ``prompt_words`` words of its sentences. ``prompt_from=rows``: each row's text is one prompt (e.g. a jsonl of
    ``{"prompt": ...}`` with ``data.source.text_column=prompt``). Prompts longer than ``max_prompt_tokens`` keep their
    end (the words the response continues)."""

    schema = PromptDataConf

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.truncated: dict[str, int] = {}

    def prompts(self, split: str) -> list[str]:
        out = []
        for doc in self.splits[split]:
            if self.cfg.prompt_from == "rows":
                out.append(doc["text"])
                continue
            for sentence in sentences(doc["text"], min_words=self.cfg.prompt_words + 2)[:self.cfg.max_prompts_per_document]:
                out.append(" ".join(sentence.split()[:self.cfg.prompt_words]))
        if not out:
            raise DataError(f"no prompts in the {split} split: data.prompt_from={self.cfg.prompt_from} found none "
                            f"(sentences need more than data.prompt_words={self.cfg.prompt_words} words)")
        return out

    def build_dataset(self, split: str) -> EpochIndexed:
        texts = self.prompts(split)
        tok = self.tokenizer
        ids = tok(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        start = [tok.bos_token_id] if tok.bos_token_id is not None else [tok.eos_token_id]
        rows, truncated = [], 0
        for row in ids:
            if len(row) > self.cfg.max_prompt_tokens:
                row, truncated = row[-self.cfg.max_prompt_tokens:], truncated + 1
            rows.append(row or start)  # an empty prompt (unconditional sampling) starts from BOS
        self.truncated[split] = truncated
        rank_zero_info(f"[data] {split}: {len(rows)} prompts ({truncated} cut to their last {self.cfg.max_prompt_tokens} "
                       f"tokens)")
        items = list(zip(texts, rows))

        def transform(item, epoch: int, index: int) -> dict:
            return {"prompt": item[0], "input_ids": torch.tensor(item[1], dtype=torch.long), "index": index}

        return EpochIndexed(items, transform)

    def collate(self, samples: list[dict]) -> dict:
        """Left padding: every prompt ends at the last column, where sampling continues."""
        input_ids, attention_mask = left_pad([s["input_ids"] for s in samples], self.tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "prompt": [s["prompt"] for s in samples],
                "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}

    def data_metrics(self) -> dict[str, float]:
        metrics = super().data_metrics()
        metrics.update({f"data/{split}_prompts_truncated": float(n) for split, n in self.truncated.items()})
        return metrics
