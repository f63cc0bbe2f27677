"""Masked-LM maths: BERT's dynamic masking and the masked-token loss, as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.objectives import IGNORE_INDEX

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch shifts arithmetically)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def counter_uniform(keys: torch.Tensor, counters: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniform numbers in [0, 1) that are a pure function of (key, counter, stream): splitmix64 on int64 tensors.

    Vectorised over a batch, with no generator state: a sample's randomness depends on its key alone, whatever
    batch, worker process or rank it lands in, and after a resume.
    """
    x = keys * _GOLDEN + counters * _MIX1 + _signed(stream * _MIX2)
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    x = x ^ _shr(x, 31)
    return _shr(x, 11).double().mul_(1.0 / (1 << 53)).float()


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, *, keys: torch.Tensor, mask_token_id: int,
                random_pool: torch.Tensor, mask_prob: float = 0.15, mask_replace_prob: float = 0.8,
                random_replace_prob: float = 0.1, word_starts: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Select tokens for prediction and corrupt them (Devlin et al. 2019, as in ``DataCollatorForLanguageModeling``).

    ``input_ids`` is ``[batch, length]`` and ``keys`` one int64 per row: all randomness of a row is
    :func:`counter_uniform` of its key, so a sample gets the same mask in any batch. Each maskable token (not
    special, not padding) is selected with probability ``mask_prob``; with ``word_starts`` (True at the first piece of
    each word) whole words are selected and all their maskable pieces go together. Of the selected tokens,
    ``mask_replace_prob`` become ``[MASK]``, ``random_replace_prob`` a random id from ``random_pool`` (the non-special
    vocabulary) and the rest stay as they are.

    Returns ``(corrupted_ids, labels)`` with ``labels = IGNORE_INDEX`` where nothing is to be predicted.
    """
    maskable = maskable.bool()
    rows = keys.to(torch.int64).view(-1, 1).expand_as(input_ids)
    positions = torch.arange(input_ids.shape[1], dtype=torch.int64).expand_as(input_ids)
    if word_starts is None:
        selected = (counter_uniform(rows, positions, 1) < mask_prob) & maskable
    else:
        word_index = torch.cumsum(word_starts.long(), dim=1)
        selected = (counter_uniform(rows, word_index, 1) < mask_prob) & maskable
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    decision = counter_uniform(rows, positions, 2)
    to_mask = selected & (decision < mask_replace_prob)
    to_random = selected & (decision >= mask_replace_prob) & (decision < mask_replace_prob + random_replace_prob)
    picks = (counter_uniform(rows, positions, 3) * len(random_pool)).long().clamp_(max=len(random_pool) - 1)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_pool.to(input_ids.dtype)[picks], corrupted)
    return corrupted, labels


def masked_lm_sums(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summed NLL, correct predictions and count over the positions with a label.

    Sums (not means) so that losses, perplexity and accuracy can be micro-averaged over any number of batches
    and devices: ``loss = nll / count``, ``perplexity = exp(nll / count)``.
    """
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)
    flat_labels = labels.reshape(-1)
    nll = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    selected = flat_labels != IGNORE_INDEX
    correct = (flat_logits.argmax(-1) == flat_labels) & selected
    return {"nll": nll, "correct": correct.sum(), "count": selected.sum()}


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, with_accuracy: bool = True
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean cross-entropy over labelled positions (0 with a zero gradient if a batch has none).

    ``with_accuracy=False`` skips the argmax over the vocabulary (a few % of a tiny model's step) on steps whose
    logs are not written.
    """
    flat_labels = labels.reshape(-1)
    count = (flat_labels != IGNORE_INDEX).sum()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat_labels, ignore_index=IGNORE_INDEX,
                          reduction="sum")
    loss = nll / count.clamp(min=1)
    logs = {"loss": loss.detach(), "masked_tokens": count}
    if with_accuracy:
        with torch.no_grad():
            correct = ((logits.argmax(-1) == labels) & (labels != IGNORE_INDEX)).sum()
        logs["accuracy"] = correct / count.clamp(min=1)
    return loss, logs
