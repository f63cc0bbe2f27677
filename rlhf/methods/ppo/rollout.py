"""The records one PPO iteration passes along: a :class:`Rollout` (a batch of sampled responses and what the frozen
passes said about them) and its :class:`Advantages`. ``B`` is the number of responses on this rank (prompts x
``samples_per_prompt``), ``P`` the (left-padded) prompt length and ``R`` ``max_new_tokens``; per-token tensors are 0
on padding."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Rollout:
    """One batch of sampled responses, their scores and what the frozen passes computed for them."""

    prompts: list[str]  # [B] the prompt of each response (each prompt repeated samples_per_prompt times)
    texts: list[str]  # [B] the decoded responses, up to and including EOS
    seq: torch.Tensor  # [B, P + R] token ids of prompt + response
    seq_mask: torch.Tensor  # [B, P + R] attention mask of ``seq`` (0 on the prompt's left padding and after EOS)
    prompt_len: int  # P: responses start at column P of ``seq``
    responses: torch.Tensor  # [B, R] sampled token ids, pad after the first EOS
    mask: torch.Tensor  # [B, R] float, 1 on real response tokens (up to and including the first EOS)
    scores: torch.Tensor  # [B] float32 scores of the reward (before penalty, normalisation and clipping)
    gold: torch.Tensor | None  # [B] scores of the gold scorer, None without one
    has_eos: torch.Tensor  # [B] bool, the response ended with EOS (not cut at max_new_tokens)
    logprobs: torch.Tensor  # [B, R] logprobs of the response tokens under the policy at rollout time (old logprobs)
    sample_logprobs: torch.Tensor  # [B, R] the same logprobs as the sampler computed them (a consistency check)
    ref_logprobs: torch.Tensor  # [B, R] logprobs under the frozen reference
    values: torch.Tensor  # [B, R] value estimates at rollout time
    entropy: torch.Tensor  # [] mean entropy (nats/token) of the sampling distribution over real response tokens
    times: dict[str, float]  # seconds spent per phase (generate, score, reference, value)

    @property
    def size(self) -> int:
        """B, the number of responses."""
        return self.seq.shape[0]

    def select(self, rows: torch.Tensor) -> Rollout:
        """The responses at ``rows`` (a 1-D index tensor); per-batch fields (prompt_len, entropy, times) are kept."""
        return _select(self, rows, keep=("prompt_len", "entropy", "times"))

    def table_rows(self, count: int) -> list[dict]:
        """The first ``count`` responses as rows of the sample table: prompt, response, reward (and gold)."""
        rows = []
        for i in range(min(count, len(self.texts))):
            row = {"prompt": self.prompts[i], "response": self.texts[i], "reward": float(self.scores[i])}
            if self.gold is not None:
                row["gold"] = float(self.gold[i])
            rows.append(row)
        return rows


@dataclass
class Advantages:
    """What a rollout's scores and KL became: the targets of the update."""

    advantages: torch.Tensor  # [B, R] per-token advantages (whitened if method.whiten_advantages)
    returns: torch.Tensor  # [B, R] value targets: GAE advantages + values (rloo: the advantages before whitening)
    kl: torch.Tensor  # [B, R] per-token KL estimate to the reference (method.kl_estimator)
    scores: torch.Tensor  # [B] the scores optimised: after the missing-EOS penalty, normalisation and clipping
    rewards: torch.Tensor | None  # [B, R] per-token rewards, -kl_coef * kl plus the score at the last token (gae)

    def select(self, rows: torch.Tensor) -> Advantages:
        """The responses at ``rows`` (a 1-D index tensor)."""
        return _select(self, rows, keep=())


def _select(record, rows: torch.Tensor, keep: tuple[str, ...]):
    picked = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if field.name in keep or value is None:
            continue
        picked[field.name] = [value[i] for i in rows.tolist()] if isinstance(value, list) else value[rows]
    return replace(record, **picked)


TOKEN_FIELDS = {Rollout: ("responses", "mask", "logprobs", "sample_logprobs", "ref_logprobs", "values"),
                Advantages: ("advantages", "returns", "kl", "rewards")}  # the [B, R] tensors of each record


def trim_padding(part: Rollout, adv: Advantages) -> tuple[Rollout, Advantages]:
    """The same responses without the columns that are padding in every row: the prompts' left padding shared by all
    rows, and the response columns after every row has ended. A micro-batch's passes then cost what its rows need;
    the result is the same, since positions come from the attention mask and the dropped columns are out of every
    masked sum."""
    lead = int(part.seq_mask[:, :part.prompt_len].any(0).long().argmax())  # the first prompt column real in a row
    real = part.mask.any(0).nonzero()
    keep = int(real.max()) + 1 if len(real) else 1  # response columns up to the last real token of any row
    if lead == 0 and keep == part.responses.shape[1]:
        return part, adv
    end = part.prompt_len + keep
    part = replace(part, seq=part.seq[:, lead:end], seq_mask=part.seq_mask[:, lead:end],
                   prompt_len=part.prompt_len - lead, **_columns(part, keep))
    return part, replace(adv, **_columns(adv, keep))


def _columns(record, keep: int) -> dict[str, torch.Tensor]:
    """The first ``keep`` response columns of each [B, R] tensor of ``record``."""
    values = {name: getattr(record, name) for name in TOKEN_FIELDS[type(record)]}
    return {name: value[:, :keep] for name, value in values.items() if value is not None}


def sample_row_keys(index: torch.Tensor, samples_per_prompt: int) -> torch.Tensor:
    """The key of each response's randomness, ``prompt index * k + sample number`` for the k responses of each prompt
    (consecutive rows): the same response on any rank and in any batch."""
    k = samples_per_prompt
    return index.to(torch.int64).repeat_interleave(k, 0) * k + torch.arange(k).repeat(index.shape[0]).to(index.device)


def minibatches(size: int, count: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``count`` disjoint minibatches of ``size // count`` rows, a random permutation of ``range(size)`` in order."""
    order = torch.randperm(size, generator=generator, device=generator.device)
    rows = size // count
    for start in range(0, rows * count, rows):
        yield order[start:start + rows]


@contextmanager
def timed(times: dict[str, float], phase: str) -> Iterator[None]:
    """Record the seconds the block takes as ``times[phase]``."""
    start = time.perf_counter()
    yield
    times[phase] = time.perf_counter() - start
