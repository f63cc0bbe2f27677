"""Masking statistics and masked-LM metrics against hand-computed values."""

import math

import torch
import torch.nn.functional as F

from rlhf.methods.mlm.module import MaskedTokenMetrics
from rlhf.objectives import IGNORE_INDEX
from rlhf.objectives.mlm import counter_uniform, mask_tokens, masked_lm_loss, masked_lm_sums

MASK, CLS, SEP, PAD = 4, 2, 3, 0
POOL = torch.arange(5, 1000)


def _batch(rows=400, length=128):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (rows, length), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[:, -10:-1] = PAD
    maskable = ~torch.isin(ids, torch.tensor([CLS, SEP, PAD]))
    return ids, maskable


def test_mask_rate_and_80_10_10_split():
    ids, maskable = _batch()
    corrupted, labels = mask_tokens(ids, maskable, mask_token_id=MASK, random_pool=POOL,
                                    keys=torch.arange(len(ids)))
    selected = labels != IGNORE_INDEX
    n_sel = selected.sum().item()
    rate = n_sel / maskable.sum().item()
    assert abs(rate - 0.15) < 0.005, rate  # ~46k maskable tokens: std of the rate ~0.0017
    as_mask = (corrupted == MASK) & selected
    unchanged = (corrupted == ids) & selected
    randomised = selected & ~as_mask & ~unchanged
    assert abs(as_mask.sum().item() / n_sel - 0.8) < 0.015
    # a random replacement can draw the original token (1 in 995): it then counts as unchanged
    assert abs(randomised.sum().item() / n_sel - 0.1) < 0.012
    assert abs(unchanged.sum().item() / n_sel - 0.1) < 0.012
    # labels hold the original ids exactly where selected
    assert torch.equal(labels[selected], ids[selected])


def test_special_and_pad_tokens_never_selected_or_changed():
    ids, maskable = _batch()
    corrupted, labels = mask_tokens(ids, maskable, mask_token_id=MASK, random_pool=POOL, mask_prob=0.9,
                                    keys=torch.arange(len(ids)))
    assert (labels[~maskable] == IGNORE_INDEX).all()
    assert torch.equal(corrupted[~maskable], ids[~maskable])
    assert not torch.isin(corrupted[maskable & (corrupted != MASK)], torch.tensor([CLS, SEP, PAD])).any()


def test_configurable_split_and_probability():
    ids, maskable = _batch()
    corrupted, labels = mask_tokens(ids, maskable, mask_token_id=MASK, random_pool=POOL, mask_prob=0.3,
                                    mask_replace_prob=1.0, random_replace_prob=0.0,
                                    keys=torch.arange(len(ids)) + 1000)
    selected = labels != IGNORE_INDEX
    assert abs(selected.sum().item() / maskable.sum().item() - 0.3) < 0.01
    assert (corrupted[selected] == MASK).all()


def test_a_rows_mask_depends_on_its_key_only_not_on_its_batch():
    ids, maskable = _batch(rows=6)
    keys = torch.tensor([11, 12, 13, 14, 15, 16])
    settings = dict(mask_token_id=MASK, random_pool=POOL)
    whole = mask_tokens(ids, maskable, keys=keys, **settings)
    # the same rows in another order and another batch: each row gets the same mask
    order = torch.tensor([5, 0, 3])
    part = mask_tokens(ids[order], maskable[order], keys=keys[order], **settings)
    assert torch.equal(part[0], whole[0][order]) and torch.equal(part[1], whole[1][order])
    other = mask_tokens(ids, maskable, keys=keys + 100, **settings)
    assert not torch.equal(other[1], whole[1])


def test_counter_uniform_is_uniform_and_deterministic():
    u = counter_uniform(torch.full((200_000,), 7, dtype=torch.int64), torch.arange(200_000), stream=1)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts - 20_000).abs().max() < 700  # ~5 sigma
    assert torch.equal(u, counter_uniform(torch.full((200_000,), 7, dtype=torch.int64), torch.arange(200_000), 1))


def test_whole_word_masking_selects_all_pieces_of_a_word():
    # 3000 words of 3 pieces each between [CLS] and [SEP]
    n_words = 3000
    ids = torch.tensor([CLS] + list(range(10, 10 + 3 * n_words)) + [SEP]) % 900 + 5
    ids[0], ids[-1] = CLS, SEP
    starts = torch.tensor([True] + [j % 3 == 0 for j in range(3 * n_words)] + [True])
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[0] = maskable[-1] = False
    _, labels = mask_tokens(ids[None], maskable[None], mask_token_id=MASK, random_pool=POOL,
                            word_starts=starts[None], keys=torch.tensor([4]))
    selected = (labels[0] != IGNORE_INDEX)[1:-1].reshape(n_words, 3)
    per_word = selected.sum(1)
    assert set(per_word.tolist()) <= {0, 3}  # all pieces of a word, or none
    assert abs((per_word == 3).float().mean().item() - 0.15) < 0.025


def test_masked_lm_sums_and_loss_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]])
    labels = torch.tensor([[0, IGNORE_INDEX], [1, 2]])
    # NLL of the three labelled positions: -log softmax
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    nll1 = -math.log(1 / (2 + math.exp(3)))
    nll2 = -math.log(1 / 3)
    sums = masked_lm_sums(logits, labels)
    assert math.isclose(sums["nll"].item(), nll0 + nll1 + nll2, rel_tol=1e-6)
    assert sums["count"].item() == 3
    assert sums["correct"].item() == 1  # position (0,0) right; (1,0) predicts 2 not 1; (1,1) argmax 0 not 2
    loss, logs = masked_lm_loss(logits, labels)
    assert math.isclose(loss.item(), (nll0 + nll1 + nll2) / 3, rel_tol=1e-6)
    assert math.isclose(logs["accuracy"].item(), 1 / 3, rel_tol=1e-6)


def test_perplexity_is_exp_of_summed_nll_over_summed_count_not_mean_of_batches():
    metric = MaskedTokenMetrics()
    g = torch.Generator().manual_seed(0)
    batches = []
    for n_labelled in (1, 20):  # very different masked counts per batch
        logits = torch.randn(1, 30, 11, generator=g)
        labels = torch.full((1, 30), IGNORE_INDEX)
        labels[0, :n_labelled] = torch.randint(0, 11, (n_labelled,), generator=g)
        metric.update(logits, labels)
        batches.append((logits, labels))
    all_logits = torch.cat([b[0].reshape(-1, 11) for b in batches])
    all_labels = torch.cat([b[1].reshape(-1) for b in batches])
    expected_loss = F.cross_entropy(all_logits, all_labels, ignore_index=IGNORE_INDEX).item()
    out = metric.compute()
    assert math.isclose(out["loss"].item(), expected_loss, rel_tol=1e-5)
    assert math.isclose(out["perplexity"].item(), math.exp(expected_loss), rel_tol=1e-5)
    per_batch_mean = sum(math.exp(masked_lm_loss(*b)[0].item()) for b in batches) / 2
    assert not math.isclose(out["perplexity"].item(), per_batch_mean, rel_tol=1e-3)
    correct = (all_logits.argmax(-1) == all_labels).sum().item()
    assert math.isclose(out["masked_accuracy"].item(), correct / 21, rel_tol=1e-6)
