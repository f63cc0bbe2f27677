"""Masked-LM maths: BERT's dynamic masking and the masked-token loss, as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, *, mask_token_id: int, random_pool: torch.Tensor,
                mask_prob: float = 0.15, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1,
                word_starts: torch.Tensor | None = None, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Select tokens for prediction and corrupt them (Devlin et al. 2019, as in ``DataCollatorForLanguageModeling``).

    Each maskable token (not special, not padding) is selected with probability ``mask_prob``; with ``word_starts``
    (True at the first piece of each word) whole words are selected instead and all their maskable pieces go
    together. Of the selected tokens, ``mask_replace_prob`` become ``[MASK]``, ``random_replace_prob`` a random id
    from ``random_pool`` (the non-special vocabulary) and the rest stay as they are.

    Returns ``(corrupted_ids, labels)`` with ``labels = IGNORE_INDEX`` where nothing is to be predicted.
    Works on any shape; all randomness comes from ``generator``.
    """
    maskable = maskable.bool()
    if word_starts is None:
        selected = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & maskable
    else:
        flat_starts = word_starts.reshape(-1).long()
        word_index = torch.cumsum(flat_starts, 0) - 1
        word_index = word_index.clamp(min=0)
        n_words = int(word_index.max().item()) + 1 if word_index.numel() else 0
        chosen_words = torch.rand(n_words, generator=generator) < mask_prob
        selected = chosen_words[word_index].reshape(input_ids.shape) & maskable
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    decision = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (decision < mask_replace_prob)
    to_random = selected & (decision >= mask_replace_prob) & (decision < mask_replace_prob + random_replace_prob)
    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_token_id
    n_random = int(to_random.sum())
    if n_random:
        picks = torch.randint(len(random_pool), (n_random,), generator=generator)
        corrupted[to_random] = random_pool[picks].to(corrupted.dtype)
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


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean cross-entropy over labelled positions (0 with a zero gradient if a batch has none)."""
    sums = masked_lm_sums(logits, labels)
    count = sums["count"].clamp(min=1)
    loss = sums["nll"] / count
    return loss, {"loss": loss.detach(), "accuracy": sums["correct"] / count, "masked_tokens": sums["count"]}
