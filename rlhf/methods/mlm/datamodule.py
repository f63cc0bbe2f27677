"""Masked-LM data: documents tokenized, packed into ``[CLS] ... [SEP]`` blocks (or one padded document a row), and
masked dynamically: a new mask each epoch in training, a fixed mask for val/test so evaluations compare."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from rlhf.data.packing import pack_documents, truncate_documents
from rlhf.data.sampling import EpochIndexed
from rlhf.errors import DataError
from rlhf.methods.data import TextDataModule
from rlhf.methods.mlm.config import MLMDataConf
from rlhf.objectives.mlm import mask_tokens
from rlhf.utils.rng import sample_key


class MaskedLMDataModule(TextDataModule):
    schema = MLMDataConf

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.packing_stats: dict[str, float] = {}

    def _special_ids(self) -> list[int]:
        return sorted(set(self.tokenizer.all_special_ids))

    def build_dataset(self, split: str) -> EpochIndexed:
        tok = self.tokenizer
        if tok.mask_token_id is None or tok.cls_token_id is None or tok.sep_token_id is None:
            raise DataError("masked-LM data needs a tokenizer with [MASK], [CLS] and [SEP] tokens "
                            "(model.tokenizer.algorithm=wordpiece, or a BERT-style pretrained tokenizer)")
        texts = [doc["text"] for doc in self.splits[split]]
        encoded = tok(texts, add_special_tokens=False, return_attention_mask=False)
        word_starts = None
        if self.cfg.whole_word_mask:
            word_starts = []
            for i in range(len(encoded["input_ids"])):
                words = encoded.word_ids(i)
                word_starts.append([w is None or j == 0 or w != words[j - 1] for j, w in enumerate(words)])
        body = self.cfg.block_size - 2
        if self.cfg.packing:
            blocks, stats = pack_documents(encoded["input_ids"], body, separator=tok.sep_token_id, flags=word_starts)
        else:
            blocks, stats = truncate_documents(encoded["input_ids"], body, flags=word_starts)
        self.packing_stats.update({f"data/{split}_{k}": float(v) for k, v in stats.items()})
        if not blocks:
            raise DataError(f"the {split} split gives no {self.cfg.block_size}-token block ({stats}); lower "
                            f"data.block_size or add text")
        rank_zero_info(f"[data] {split}: {len(blocks)} blocks of <= {self.cfg.block_size} tokens "
                       f"({stats['tokens']} tokens, {stats['dropped_tokens']} dropped at block edges)")
        return EpochIndexed(blocks, self._make_transform(split))

    def _make_transform(self, split: str):
        tok = self.tokenizer
        cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
        seed = self.seed

        def transform(block, epoch: int, index: int) -> dict:
            ids, flags = block
            # Training masks change every epoch; val/test masks are fixed (epoch -1) so evaluations are comparable.
            key = sample_key(seed, split, epoch if split == "train" else -1, index)
            return {"input_ids": torch.tensor([cls_id, *ids, sep_id], dtype=torch.long), "index": index, "key": key,
                    "word_starts": None if flags is None else torch.tensor([True, *flags, True])}

        return transform

    @cached_property
    def _mask_settings(self) -> dict:
        tok = self.tokenizer
        specials = torch.tensor(self._special_ids())
        vocab = torch.arange(len(tok))
        return dict(mask_token_id=tok.mask_token_id, random_pool=vocab[~torch.isin(vocab, specials)],
                    mask_prob=self.cfg.mask_prob, mask_replace_prob=self.cfg.mask_replace_prob,
                    random_replace_prob=self.cfg.random_replace_prob)

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        """Pad, then mask the whole batch at once; each row's mask is a function of its sample key only."""
        length = max(len(s["input_ids"]) for s in samples)
        input_ids = torch.full((len(samples), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        word_starts = torch.ones((len(samples), length), dtype=torch.bool) if self.cfg.whole_word_mask else None
        for row, sample in enumerate(samples):
            n = len(sample["input_ids"])
            input_ids[row, :n] = sample["input_ids"]
            attention_mask[row, :n] = 1
            if word_starts is not None:
                word_starts[row, :n] = sample["word_starts"]
        maskable = ~torch.isin(input_ids, self._special_tensor) & attention_mask.bool()
        keys = torch.tensor([s["key"] for s in samples], dtype=torch.int64)
        corrupted, labels = mask_tokens(input_ids, maskable, keys=keys, word_starts=word_starts,
                                        **self._mask_settings)
        return {"input_ids": corrupted, "labels": labels, "attention_mask": attention_mask,
                "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}

    @cached_property
    def _special_tensor(self) -> torch.Tensor:
        return torch.tensor(self._special_ids())

    def data_metrics(self) -> dict[str, float]:
        return {**super().data_metrics(), **self.packing_stats}
