"""The DataModule spine every method shares: documents, splits, the tokenizer the model asks for and resumable
loaders (:class:`TextDataModule`), and feedback records read with their own splits and tokenized with one prompt for
every response (:class:`RecordDataModule`: reward, SFT, DPO, KTO)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from rlhf.config.common import TokenizerConf
from rlhf.config.fields import as_config
from rlhf.data.documents import load_documents, split_documents, split_of
from rlhf.data.feedback import Policy, encode_pair
from rlhf.data.formats import prompt_key, render_prompt
from rlhf.data.readers import DropReport, dataset_splits, read_hf_dataset, read_records
from rlhf.data.sampling import ResumableSampler
from rlhf.data.simulated_feedback import write_feedback
from rlhf.data.tokenizer import ADDED_PAD_KEY, build_tokenizer
from rlhf.errors import DataError


class TextDataModule(pl.LightningDataModule):
    """Reads the configured source once, splits it by document hash and builds the tokenizer the model asks for.

    Subclasses turn ``self.splits[name]`` into datasets in :meth:`build_dataset` and say how to batch them.
    """

    schema: type  # the data.* schema this DataModule reads (``rlhf/methods/<method>/config.py``)

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        """``cfg``: the ``data`` settings (a ``schema`` object or a mapping; keys it leaves out take the schema's
        defaults); ``tokenizer``: ``model.tokenizer`` (``TokenizerConf``); ``seed``: the run's seed."""
        super().__init__()
        self.cfg = as_config(self.schema, cfg, "data")
        self.tokenizer_spec = as_config(TokenizerConf, tokenizer, "model.tokenizer")
        self.seed = seed
        self.report = DropReport(str(self.cfg.source.path or self.cfg.source.kind))
        self.datasets: dict[str, Any] = {}
        self._resume: tuple[int, int] | None = None
        self._train_sampler: ResumableSampler | None = None

    # ---- documents and tokenizer --------------------------------------------------------------------------------
    @cached_property
    def splits(self) -> dict[str, list[dict]]:
        documents = load_documents(self.cfg.source, self.report)
        split = self.cfg.split
        splits = split_documents(documents, split.salt, split.val_fraction, split.test_fraction)
        rank_zero_info(f"[data] {self.report.summary()}; split train/val/test = "
                       + "/".join(str(len(splits[s])) for s in ("train", "val", "test")) + " documents")
        return splits

    def split_of(self, key: str) -> str:
        """The split (train/val/test) of a document or prompt, by a hash of ``data.split.salt`` and ``key``: the same
        on every machine and run, and a record never moves when others are added."""
        split = self.cfg.split
        return split_of(key, split.salt, split.val_fraction, split.test_fraction)

    def tokenizer_texts(self) -> list[str]:
        """The texts a tokenizer is trained on (``model.tokenizer.kind=train``): the training split."""
        return [doc["text"] for doc in self.splits["train"]]

    @cached_property
    def tokenizer(self):
        texts = self.tokenizer_texts() if self.tokenizer_spec.kind == "train" else None
        return build_tokenizer(self.tokenizer_spec, texts, self.cfg.cache_dir)

    def data_metrics(self) -> dict[str, float]:
        """Counts worth logging once per run (kept and dropped records, sizes of the datasets)."""
        metrics = self.report.metrics()
        for name, dataset in self.datasets.items():
            metrics[f"data/{name}_samples"] = float(len(dataset))
        if ADDED_PAD_KEY in self.tokenizer.init_kwargs:  # a hub tokenizer without a distinct pad token, repaired
            metrics["model/added_pad_token"] = 1.0
        return metrics

    # ---- datasets and loaders ------------------------------------------------------------------------------------
    def build_dataset(self, split: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._world()
        batch_size = self.cfg.loader.batch_size
        dataset = self.datasets["train"]
        if len(dataset) < batch_size * world:
            raise DataError(f"the train split has {len(dataset)} samples, fewer than one global batch "
                             f"({batch_size} x {world} ranks); lower data.loader.batch_size or add data")
        sampler = ResumableSampler(len(dataset), batch_size=batch_size, seed=self.seed, rank=rank, world_size=world)
        if self._resume is not None:
            sampler.resume_from(*self._resume)
            self._resume = None
        self._train_sampler = sampler
        return self._loader(dataset, sampler=sampler, batch_size=batch_size, drop_last=True)

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world = self._world()
        dataset = self.datasets[split]
        if len(dataset) < world:
            raise DataError(f"the {split} split has {len(dataset)} samples, fewer than the {world} ranks that share it; "
                            f"add data, raise data.split.{split}_fraction, or use fewer devices")
        batch_size = self.cfg.loader.eval_batch_size or self.cfg.loader.batch_size
        sampler = ResumableSampler(len(dataset), batch_size=batch_size, seed=self.seed, shuffle=False, rank=rank,
                                   world_size=world, drop_tail=False)
        return self._loader(dataset, sampler=sampler, batch_size=batch_size, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _loader(self, dataset, **kwargs) -> DataLoader:
        workers = self.cfg.loader.num_workers
        # A private generator: creating the loader's iterator must not consume the global RNG (dropout's), or a
        # resumed run would drift from an uninterrupted one.
        return DataLoader(dataset, collate_fn=self.collate, num_workers=workers,
                          pin_memory=self.cfg.loader.pin_memory,
                          persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.seed),
                          **kwargs)

    # ---- resume: where in the epoch we were --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._resume = (int(state["epoch"]), int(state["batches_done"]))


SPLITS = ("train", "val", "test")


class RecordDataModule(TextDataModule):
    """A DataModule of feedback records (pairs, ratings, demonstrations): read with the source's own splits where it
    has them (simulated feedback, a ``{split}`` path, a Hugging Face dataset's splits or ``data.source.split_map``;
    a split it lacks is cut from train by prompt hash), else one file split by prompt hash, so no prompt is shared
    across splits. Subclasses validate rows into records (:meth:`_validate`) and say which simulated feedback file
    they read (``simulated_kind``) and what their records are called (``record_kind``)."""

    simulated_kind: str = "pairs"
    record_kind: str = "records"
    response_fields: tuple[str, ...] = ("chosen", "rejected")  # the fields of a record that are responses

    def __init__(self, cfg: Any, tokenizer: Any, seed: int):
        super().__init__(cfg, tokenizer, seed)
        self.reports = {name: DropReport(f"{self.record_kind} {name}") for name in SPLITS}
        self.policy = Policy(self.cfg.policy, self.cfg.strict)
        self.truncated: dict[str, int] = {}  # split -> records whose prompt was cut to fit data.max_length

    def _validate(self, origin: str, rows: Any, report: DropReport) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _split_sources(self) -> dict[str, tuple[str, Any]] | None:
        """Our split -> (origin, rows) when the source has its own splits; None for one file split by hash."""
        source = self.cfg.source
        if source.kind == "simulated":
            options = {k: getattr(source, k) for k in ("scorer", "temperature", "pairs_per_article", "max_articles")
                       if getattr(source, k) is not None}
            options["seed"] = source.feedback_seed
            tag = "-".join(f"{k}={v}" for k, v in sorted(options.items()))
            directory = Path(self.cfg.cache_dir).expanduser().parent / "feedback" / tag
            if not (directory / f"{self.simulated_kind}_test.jsonl").exists():
                write_feedback(directory, **options)
            return {s: self._file(str(directory / f"{self.simulated_kind}_{s}.jsonl")) for s in SPLITS}
        path = str(source.path)
        if source.kind == "hf":
            mapping = dataset_splits(path, source.hf_config, source.split_map, source.hf_split)
            if mapping is None:
                return None
            return {ours: (f"{path} [{theirs}]", read_hf_dataset(path, theirs, source.hf_config))
                    for ours, theirs in mapping.items()}
        if "{split}" in path:
            return {s: self._file(path.replace("{split}", s)) for s in SPLITS}
        return None

    def _file(self, path: str) -> tuple[str, Any]:
        return path, read_records(path, self.cfg.source.file_type)

    def tokenizer_texts(self) -> list[str]:
        texts = []
        for record in self.splits["train"]:
            texts += [render_prompt(None, record["prompt"]), *(record[f] for f in self.response_fields)]
        return [t for t in texts if t]

    def eval_prompts(self, split: str, count: int) -> list[str]:
        """Held-out prompts (rendered as the model sees them) for sampling during evaluation."""
        return [render_prompt(self.tokenizer, r["prompt"]) for r in self.splits[split][:count]]

    def encode(self, split: str, layout: dict[str, list[int]]) -> list[tuple[dict, list[list[int]], int]]:
        """Every record of ``split`` as ``(record, sequences, prompt_length)``: one token sequence per response
        field, all sharing the same prompt ids (chat template for messages), cut from the left so every response
        keeps its tail (``rlhf.data.feedback.encode_pair``, with ``layout``'s special ids); ``prompt_length`` is
        where the responses start. Records that do not fit (or whose two responses tokenize alike) are dropped or
        refused per ``data.policy``; cut prompts are counted in ``self.truncated[split]``."""
        records, tok, fields = self.splits[split], self.tokenizer, self.response_fields
        prompts = tok([render_prompt(tok, r["prompt"]) for r in records], add_special_tokens=False)["input_ids"]
        responses = {f: tok([r[f] for r in records], add_special_tokens=False)["input_ids"] for f in fields}
        report, encoded, truncated = self.reports[split], [], 0
        limit = self.cfg.max_length
        for i, record in enumerate(records):
            where = f"{split} record {i + 1} (prompt {prompt_key(record['prompt'])[:40]!r})"
            out = encode_pair(prompts[i], [responses[f][i] for f in fields], limit, layout)
            if out is None:
                self.policy.handle("too_long", where, f"a response does not fit data.max_length={limit} even "
                                   "without its prompt", report)
                continue
            sequences, was_truncated = out
            if was_truncated:
                if self.policy.rules["too_long"] != "truncate_prompt":
                    self.policy.handle("too_long", where, f"longer than data.max_length={limit}", report)
                    continue
                truncated += 1
            if len(sequences) == 2 and sequences[0] == sequences[1]:
                self.policy.handle("identical_after_truncation", where, "chosen and rejected have the same tokens",
                                   report)
                continue
            prompt_length = len(sequences[0]) - len(responses[fields[0]][i]) - len(layout["eos"])
            encoded.append((record, sequences, prompt_length))
        self.truncated[split] = truncated
        if not encoded:
            raise DataError(f"the {split} split has no usable {self.record_kind} after tokenization "
                            f"({report.summary()})")
        return encoded

    def data_metrics(self) -> dict[str, float]:
        metrics = super().data_metrics()
        for name in SPLITS:
            metrics.update(self.reports[name].metrics(prefix=f"data/{name}"))
            metrics[f"data/{name}_truncated_prompt"] = float(self.truncated.get(name, 0))
        return metrics

    @cached_property
    def splits(self) -> dict[str, list[dict]]:
        sources = self._split_sources()
        if sources is not None:
            splits = {s: self._validate(origin, rows, self.reports[s]) for s, (origin, rows) in sources.items()}
            for missing in [s for s in SPLITS if s not in splits]:  # cut from train by prompt hash
                carved = [r for r in splits["train"] if self.split_of(prompt_key(r["prompt"])) == missing]
                splits["train"] = [r for r in splits["train"] if self.split_of(prompt_key(r["prompt"])) != missing]
                splits[missing] = carved
                for name in ("train", missing):
                    self.reports[name].kept = len(splits[name])
            origins = {s: sources[s][0] if s in sources else f"{sources['train'][0]} (cut by prompt hash: "
                       f"data.split.{s}_fraction)" for s in SPLITS}
        else:  # one file: split by a hash of the prompt, so no prompt is shared across splits
            source = self.cfg.source
            path = str(source.path)
            rows = read_hf_dataset(path, source.hf_split, source.hf_config) if source.kind == "hf" else \
                self._file(path)[1]
            records = self._validate(path, rows, self.report)
            splits = {s: [] for s in SPLITS}
            for record in records:
                splits[self.split_of(prompt_key(record["prompt"]))].append(record)
            for name in SPLITS:  # drops are counted once, for the file (data/dropped_*); kept per split
                self.reports[name].kept = len(splits[name])
            origins = {s: f"{path} (one file split by prompt hash: data.split.{s}_fraction)" for s in SPLITS}
            origins["train"] = path
        for name in SPLITS:
            if not splits[name]:
                carved = sources is None or name not in sources
                report = self.report if sources is None else self.reports[name]
                raise DataError(f"the {name} split of the {self.record_kind} data is empty after validation: "
                                f"{origins[name]}; {report.summary()}. Add records"
                                + (f" or raise data.split.{name}_fraction" if carved and name != "train" else ""))
        for name in SPLITS:
            rank_zero_info(f"[data] {self.reports[name].summary()}" if sources else f"[data] {name}: "
                           f"{len(splits[name])} records")
        self.origins = origins
        return splits
