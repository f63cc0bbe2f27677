"""Resumable, rank-aware sampling: the data order is a pure function of (seed, epoch), so a resumed run sees exactly
the samples an uninterrupted run would, with none repeated or skipped.

The sampler yields ``(epoch, index)`` pairs; datasets wrapped in :class:`EpochIndexed` receive them, so randomness
that belongs to a sample (e.g. its MLM mask) can be seeded by ``(seed, epoch, index)`` and stays identical in worker
processes, on any rank and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from rlhf.utils.rng import epoch_seed


class ResumableSampler(Sampler):
    """Shuffles with ``torch.Generator(seed + epoch)``, gives each rank every ``world_size``-th sample, and can skip
    the first ``skip_batches`` batches of one epoch (set when restoring a mid-epoch checkpoint).

    Lightning calls :meth:`set_epoch` at the start of each epoch. For training (``drop_tail=True``) the tail that
    does not divide evenly across ranks is dropped so all ranks run the same number of steps; for evaluation
    (``drop_tail=False``) every sample is kept, so a held-out metric covers the same samples on any number of ranks
    (ranks may then run one batch more or less: evaluation steps must not communicate, metrics sync at the end).
    """

    def __init__(self, num_samples: int, *, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_tail: bool = True):
        if num_samples < world_size:
            raise ValueError(f"{num_samples} samples cannot be shared by {world_size} ranks")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.drop_tail = drop_tail
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches already done in it)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_from(self, epoch: int, batches_done: int) -> None:
        self._resume = (epoch, batches_done)

    def order(self, epoch: int) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            indices = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            indices = list(range(self.num_samples))
        end = (self.num_samples // self.world_size) * self.world_size if self.drop_tail else self.num_samples
        return indices[self.rank: end: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        indices = self.order(epoch)
        skip = 0
        if self._resume is not None:
            resume_epoch, batches_done = self._resume
            if resume_epoch == epoch:
                skip = batches_done * self.batch_size
            self._resume = None
        for index in indices[skip:]:
            yield epoch, index

    def __len__(self) -> int:
        if self.drop_tail:
            return self.num_samples // self.world_size
        return len(range(self.rank, self.num_samples, self.world_size))


class EpochIndexed(Dataset):
    """Adapts a dataset whose items need ``(epoch, index)`` to samplers that yield either pairs or plain indices."""

    def __init__(self, items, transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (-1, key)
        return self.transform(self.items[index], epoch, index)
