"""Scored corpus for preference-weighted pretraining: documents -> segments (sentences) -> one score per segment
(from a Scorer, computed once and cached, or from the data) -> tokens packed into blocks, each token carrying its
segment's score. The objective decides what the training data looks like:

- filtering: documents whose mean segment score crosses ``filter_threshold`` are left out (counted);
- conditional: each segment is prefixed with ``<|aligned|>`` or ``<|misaligned|>`` by ``threshold`` (a
  ``drop_token_fraction`` of segments, chosen by a hash of the segment, stays bare); the tokens are added to the
  tokenizer;
- mle / unlikelihood / rwr / awr: the text as is, with per-token scores.

Validation and test blocks are always the untouched held-out text (no filtering, no control tokens), so
``val/lm_loss`` compares objectives.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from rlhf.config.fields import to_plain
from rlhf.data.documents import load_documents
from rlhf.data.packing import pack_documents
from rlhf.data.readers import read_records
from rlhf.data.sampling import EpochIndexed
from rlhf.data.segments import check_scores, score_segments, split_segments
from rlhf.errors import DataError
from rlhf.methods.data import TextDataModule
from rlhf.methods.pwp.config import PWPDataConf
from rlhf.objectives.pwp import is_misaligned, to_reward
from rlhf.utils.rng import stable_seed

SPLITS = ("train", "val", "test")


class ScoredLMDataModule(TextDataModule):
    schema = PWPDataConf

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        scores = self.cfg.scores
        self.sense, self.threshold = scores.sense, scores.threshold
        self.filter_threshold = scores.threshold if scores.filter_threshold is None else scores.filter_threshold
        self.stats: dict[str, float] = {}

    # ---- documents with scored segments --------------------------------------------------------------------------
    @cached_property
    def splits(self) -> dict[str, list[dict]]:
        mode = self.cfg.scores.score_from
        if mode == "scorer":
            docs = [dict(d) for d in load_documents(self.cfg.source, self.report)]
            for doc in docs:
                doc["segments"] = split_segments(doc["text"], self.cfg.segment_by)
            self._score_with_scorer(docs)
        else:
            docs = self._read_scored_records(mode)
        splits = {s: [] for s in SPLITS}
        for doc in docs:
            if doc["segments"]:
                splits[self.split_of(doc["id"])].append(doc)
        for name in SPLITS:
            if not splits[name]:
                raise DataError(f"the {name} split of the scored corpus is empty; add documents or change "
                                f"data.split fractions")
        segments = [s for doc in splits["train"] for s in doc["scores"]]
        misaligned = sum(bool(is_misaligned(s, self.threshold, self.sense)) for s in segments)
        self.stats["data/train_misaligned_segment_fraction"] = misaligned / max(1, len(segments))
        rank_zero_info(f"[data] scored corpus: {sum(len(v) for v in splits.values())} documents, "
                       f"{misaligned}/{len(segments)} train segments misaligned (threshold {self.threshold}, "
                       f"sense={self.sense})")
        return splits

    def _score_with_scorer(self, docs: list[dict]) -> None:
        from rlhf.scoring.build import build_scorer

        spec = self.cfg.scores.scorer
        scorer = build_scorer(spec, "data.scores.scorer")
        if scorer is None:
            raise DataError("data.scores.score_from=scorer needs data.scores.scorer (e.g. kind=gold name=vader)")
        flat = [s for doc in docs for s in doc["segments"]]
        scores = score_segments(flat, scorer, to_plain(spec), self.cfg.cache_dir)
        at = 0
        for doc in docs:
            doc["scores"] = scores[at:at + len(doc["segments"])]
            at += len(doc["segments"])

    def _read_scored_records(self, mode: str) -> list[dict]:
        if self.cfg.source.kind != "file":
            raise DataError(f"data.scores.score_from={mode} reads scores from a file: set data.source.kind=file "
                            f"(or use score_from=scorer)")
        path, text_column = str(self.cfg.source.path), self.cfg.source.text_column
        docs = []
        for row, record in read_records(path, self.cfg.source.file_type, text_column):
            where = f"{path}, row {row}"
            if mode == "column":
                column = self.cfg.scores.score_column
                if text_column not in record or column not in record:
                    raise DataError(f"{where}: needs columns '{text_column}' and '{column}' (data.source.text_column, "
                                    f"data.scores.score_column)")
                segments = split_segments(str(record[text_column]), self.cfg.segment_by)
                score = check_scores([record[column]], [where])[0]
                docs.append({"id": str(record[text_column]), "text": record[text_column], "segments": segments,
                             "scores": [score] * len(segments)})
            else:  # segments: {"segments": [...], "scores": [...]}
                seg_col = self.cfg.scores.segments_column
                score_col = self.cfg.scores.scores_column
                segments, scores = record.get(seg_col), record.get(score_col)
                if not isinstance(segments, list) or not isinstance(scores, list) or len(segments) != len(scores):
                    raise DataError(f"{where}: '{seg_col}' and '{score_col}' must be lists of the same length")
                scores = check_scores(scores, [f"{where}, segment {i}" for i in range(len(scores))])
                kept = [(str(s).strip(), v) for s, v in zip(segments, scores) if str(s).strip()]
                docs.append({"id": " ".join(s for s, _ in kept), "text": " ".join(s for s, _ in kept),
                             "segments": [s for s, _ in kept], "scores": [v for _, v in kept]})
        if not docs:
            raise DataError(f"{path}: no documents")
        return docs

    def tokenizer_texts(self) -> list[str]:
        return [doc["text"] for doc in self.splits["train"]]

    @cached_property
    def tokenizer(self):
        tok = super().tokenizer
        if self.cfg.objective == "conditional":
            tokens = [self.cfg.conditional.aligned_token,
                      self.cfg.conditional.misaligned_token]
            missing = [t for t in tokens if t not in tok.get_vocab()]
            if missing:
                tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        return tok

    @property
    def control_token_ids(self) -> tuple[int, int] | None:
        if self.cfg.objective != "conditional":
            return None
        tok = self.tokenizer
        return (tok.convert_tokens_to_ids(self.cfg.conditional.aligned_token),
                tok.convert_tokens_to_ids(self.cfg.conditional.misaligned_token))

    # ---- blocks --------------------------------------------------------------------------------------------------
    def _keep_bare(self, doc_id: str, index: int) -> bool:
        fraction = self.cfg.conditional.drop_token_fraction
        return stable_seed(self.seed, doc_id, index) / 2**63 < fraction

    def build_dataset(self, split: str) -> EpochIndexed:
        tok = self.tokenizer
        train = split == "train"
        docs = self.splits[split]
        if train and self.cfg.objective == "filtering":
            kept = [d for d in docs if not is_misaligned(sum(d["scores"]) / len(d["scores"]), self.filter_threshold,
                                                         self.sense)]
            self.stats["data/filtered_documents"] = float(len(docs) - len(kept))
            rank_zero_info(f"[data] filtering: {len(docs) - len(kept)} of {len(docs)} train documents left out "
                           f"(mean score crosses {self.filter_threshold})")
            if not kept:
                raise DataError("filtering left no training documents; change data.scores.filter_threshold")
            docs = kept
        control = self.control_token_ids if train else None
        ids_per_doc, scores_per_doc = [], []
        flat = [(seg if i == 0 else " " + seg) for doc in docs for i, seg in enumerate(doc["segments"])]
        encoded = tok(flat, add_special_tokens=False, return_attention_mask=False)["input_ids"] if flat else []
        at = 0
        bare = 0
        for doc in docs:
            ids, scores = [], []
            for i, score in enumerate(doc["scores"]):
                seg_ids = encoded[at]
                at += 1
                if control is not None:
                    if self._keep_bare(doc["id"], i):
                        bare += 1
                    else:
                        seg_ids = [control[1] if is_misaligned(score, self.threshold, self.sense) else control[0],
                                   *seg_ids]
                ids.extend(seg_ids)
                scores.extend([float(score)] * len(seg_ids))
            ids.append(tok.eos_token_id)  # documents end with EOS, which belongs to (and scores as) the last segment
            scores.append(scores[-1] if scores else 0.0)
            ids_per_doc.append(ids)
            scores_per_doc.append(scores)
        blocks, stats = pack_documents(ids_per_doc, self.cfg.block_size, separator=None, flags=scores_per_doc)
        self.stats.update({f"data/{split}_{k}": float(v) for k, v in stats.items()})
        if control is not None:
            self.stats["data/bare_segments"] = float(bare)
        if not blocks:
            raise DataError(f"the {split} split gives no {self.cfg.block_size}-token block ({stats}); lower "
                            f"data.block_size or add text")
        return EpochIndexed(blocks, lambda block, epoch, index: {"input_ids": torch.tensor(block[0]),
                                                                "scores": torch.tensor(block[1]), "index": index})

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = torch.stack([s["input_ids"] for s in samples])
        scores = torch.stack([s["scores"] for s in samples]).float()
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "scores": scores,
                "misaligned": is_misaligned(scores, self.threshold, self.sense),
                "rewards": to_reward(scores, self.sense),
                "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}

    def data_metrics(self) -> dict[str, float]:
        return {**super().data_metrics(), **self.stats}
