"""Progress bars for the long steps outside Lightning's loops (scoring a corpus, generating simulated feedback,
evaluation sampling): ``tqdm`` on rank 0, refreshed every second on a terminal and every 30 s in a log file (one
line each, so a SLURM log shows progress without megabytes of carriage returns). ``RLHF_PROGRESS=0`` turns them
off."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _rank() -> int:
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """``iterable`` with a progress bar named ``desc`` (off on other ranks and with ``RLHF_PROGRESS=0``)."""
    from tqdm.auto import tqdm

    terminal = sys.stderr.isatty()
    off = _rank() != 0 or os.environ.get("RLHF_PROGRESS", "1") == "0"
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=off, mininterval=1.0 if terminal else 30.0,
                    dynamic_ncols=terminal, leave=False)
