"""Token streams into fixed-length training blocks, with counts of what did not fit."""

from __future__ import annotations

from collections.abc import Sequence

Block = tuple[list[int], list[bool] | None]


def pack_documents(token_lists: Sequence[Sequence[int]], block_len: int, separator: int | None = None,
                   flags: Sequence[Sequence[bool]] | None = None) -> tuple[list[Block], dict[str, int]]:
    """Concatenate documents (``separator`` between them) and cut blocks of exactly ``block_len`` tokens.

    ``flags`` (one bool per token, e.g. word starts) travel with their tokens; a separator's flag is True.
    The incomplete tail is dropped and counted in ``dropped_tokens``.
    """
    stream: list[int] = []
    stream_flags: list[bool] | None = [] if flags is not None else None
    for i, ids in enumerate(token_lists):
        if not ids:
            continue
        if stream and separator is not None:
            stream.append(separator)
            if stream_flags is not None:
                stream_flags.append(True)
        stream.extend(ids)
        if stream_flags is not None:
            stream_flags.extend(flags[i])
    n_blocks = len(stream) // block_len
    blocks = [(stream[b * block_len:(b + 1) * block_len],
               stream_flags[b * block_len:(b + 1) * block_len] if stream_flags is not None else None)
              for b in range(n_blocks)]
    return blocks, {"tokens": len(stream), "blocks": n_blocks, "dropped_tokens": len(stream) - n_blocks * block_len}


def truncate_documents(token_lists: Sequence[Sequence[int]], block_len: int,
                       flags: Sequence[Sequence[bool]] | None = None) -> tuple[list[Block], dict[str, int]]:
    """One block per document, cut to ``block_len`` tokens; counts truncated documents and empty ones skipped."""
    blocks: list[Block] = []
    stats = {"tokens": 0, "blocks": 0, "dropped_tokens": 0, "truncated_documents": 0, "empty_documents": 0}
    for i, ids in enumerate(token_lists):
        if not ids:
            stats["empty_documents"] += 1
            continue
        stats["tokens"] += len(ids)
        if len(ids) > block_len:
            stats["truncated_documents"] += 1
            stats["dropped_tokens"] += len(ids) - block_len
        blocks.append((list(ids[:block_len]), list(flags[i][:block_len]) if flags is not None else None))
    stats["blocks"] = len(blocks)
    return blocks, stats
