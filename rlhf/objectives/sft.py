"""Supervised fine-tuning on demonstrations: the example layout, packing without leakage, and the loss.

- An example is ``prompt + response + EOS`` (laid out by ``rlhf.data.feedback.encode_pair``: the prompt cut from the
  left so the response keeps every token); :func:`response_mask` marks its response and EOS, and :func:`sft_labels`
  picks the tokens the loss reads (the prompt's too with ``train_on_prompt``).
- :func:`pack`: examples laid end to end in blocks of ``block_size`` with a segment id per example, and
  :func:`packed_attention` the additive 4-D mask that lets a token attend only to earlier tokens of its own example
  (position ids restart per example), so a packed batch computes exactly what the examples compute alone.
- :func:`sft_loss`: the mean NLL over the labelled tokens of the batch (every labelled token weighs the same, as
  in the other methods here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlhf.objectives import IGNORE_INDEX
from rlhf.objectives.pwp import token_nll


def response_mask(length: int, prompt_length: int) -> list[int]:
    """1 on the response and EOS tokens of a ``prompt + response + EOS`` sequence, 0 on the prompt."""
    return [0] * prompt_length + [1] * (length - prompt_length)


def sft_labels(input_ids: torch.Tensor, response_mask: torch.Tensor, attention_mask: torch.Tensor,
               position_ids: torch.Tensor, train_on_prompt: bool) -> torch.Tensor:
    """The tokens the loss reads, ``IGNORE_INDEX`` elsewhere: the response and EOS (every real token with
    ``train_on_prompt``), never padding, and never the first token of an example (``position_ids == 0``): nothing
    before it belongs to its example, which in a packed row would be the end of the previous one."""
    wanted = (attention_mask if train_on_prompt else response_mask).bool() & (position_ids > 0)
    return input_ids.masked_fill(~wanted, IGNORE_INDEX)


def pack(examples: Sequence[tuple[list[int], list[int]]], block_size: int) -> list[dict[str, list[int]]]:
    """Examples ``(input_ids, response_mask)`` laid end to end, in order, into blocks of at most ``block_size``
    tokens; an example never spans two blocks. Each block: ``input_ids``, ``response_mask``, ``segment`` (0, 1, ...
    per example) and ``position_ids`` (restarting at 0 for every example)."""
    keys = ("input_ids", "response_mask", "segment", "position_ids")
    blocks: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {k: [] for k in keys}
    for ids, response_mask in examples:
        if current["input_ids"] and len(current["input_ids"]) + len(ids) > block_size:
            blocks.append(current)
            current = {k: [] for k in keys}
        segment = current["segment"][-1] + 1 if current["segment"] else 0
        current["input_ids"] += ids
        current["response_mask"] += response_mask
        current["segment"] += [segment] * len(ids)
        current["position_ids"] += list(range(len(ids)))
    if current["input_ids"]:
        blocks.append(current)
    return blocks


def packed_attention(segment: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive attention mask ``(batch, 1, L, L)`` of packed rows: 0 where a query may attend (an earlier or the
    same position of its own segment), the dtype's minimum elsewhere. Padding carries segment -1: it attends to
    itself (no row without any allowed key), and no real token attends to it."""
    length = segment.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment.device).tril()
    allowed = causal & (segment[:, :, None] == segment[:, None, :])
    return torch.zeros(allowed.shape, dtype=dtype, device=segment.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, tokens)``: the mean NLL of the labelled tokens (position t predicts token t+1) and their count."""
    nll, valid = token_nll(logits[:, :-1], labels[:, 1:])
    tokens = valid.sum()
    return nll.sum() / tokens.clamp(min=1), tokens
