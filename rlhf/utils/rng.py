"""Every seed derived from the run's seed, in one place: each is a pure function of its parts (not of the process,
rank order or the global RNG state), so the same after a resume, in any worker and on any rank."""

from __future__ import annotations

import hashlib
from typing import Any


def _digest64(*parts: Any) -> bytes:
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()


def stable_seed(*parts: Any) -> int:
    """A non-negative 63-bit seed that is a function of ``parts`` only (not of the process, rank order or RNG state):
    the same after a resume and in any worker."""
    return int.from_bytes(_digest64(*parts), "big") >> 1


def sample_key(seed: int, split: str, epoch: int, index: int) -> int:
    """A signed 64-bit key owned by one sample of one epoch: the seed of all its randomness (e.g. its MLM mask), the
    same in any batch, worker process or rank, and after a resume."""
    return int.from_bytes(_digest64(seed, split, epoch, index), "big", signed=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of one epoch of the training sampler."""
    return seed * 100_003 + epoch
