"""Documents as scored segments (sentences), for preference-weighted pretraining: segmentation, one scoring pass
over the corpus cached on disk, and non-finite scores reported with the row they came from."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rlhf.errors import DataError
from rlhf.utils.progress import progress

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_segments(text: str, by: str = "sentences") -> list[str]:
    """``by=sentences``: each line split at sentence ends (nothing dropped); ``lines``; ``document``: one segment."""
    if by == "document":
        return [text.strip()] if text.strip() else []
    out = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        out.extend(s.strip() for s in (_SENTENCE.split(line) if by == "sentences" else [line]) if s.strip())
    return out


def check_scores(scores: Sequence[Any], where: Sequence[str]) -> list[float]:
    """Floats, or a DataError naming the first row with a missing, non-numeric or non-finite score."""
    out = []
    for value, place in zip(scores, where):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{place}: score {value!r} is not a number; fix the row or drop it") from None
        if not math.isfinite(number):
            raise DataError(f"{place}: score {value!r} is not finite; fix the row or drop it")
        out.append(number)
    return out


def score_segments(segments: Sequence[str], scorer: Any, spec: dict, cache_dir: str | os.PathLike | None,
                   batch_size: int = 512) -> list[float]:
    """Scores of ``segments`` by ``scorer`` (empty prompts), computed once and cached by a hash of the scorer's config
    and the texts; the cache file is written to a temporary name and renamed, so a crash never leaves half of it."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for text in segments:
        digest.update(hashlib.sha1(text.encode()).digest())
    target = Path(cache_dir).expanduser() / "scores" / f"{digest.hexdigest()[:20]}.pt" if cache_dir else None
    if target is not None and target.exists():
        cached = torch.load(target, weights_only=True)
        if cached.numel() == len(segments):
            return cached.tolist()
    values = []
    for start in progress(range(0, len(segments), batch_size), "scoring segments", unit="batch",
                          total=-(-len(segments) // batch_size)):
        chunk = list(segments[start:start + batch_size])
        where = f"scoring segments {start + 1}-{start + len(chunk)} of {len(segments)}"
        values.append(scorer.score([""] * len(chunk), chunk, where=where).float().cpu())
    scores = torch.cat(values) if values else torch.zeros(0)
    bad = (~torch.isfinite(scores)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise DataError(f"the scorer returned {float(scores[i])} for segment {i} ({segments[i][:80]!r}); scores must "
                        f"be finite")
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        torch.save(scores, tmp)
        os.replace(tmp, target)
    return scores.tolist()
