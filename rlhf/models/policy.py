"""Causal-LM policies and their critics: built from config (tiny GPT-2) or any ``AutoModelForCausalLM`` checkpoint,
plus the sampling loop PPO uses and the logprob/value passes that must agree with it exactly."""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GPT2LMHeadModel, PreTrainedModel

from rlhf.config.common import BackboneConf
from rlhf.config.fields import as_config
from rlhf.errors import ModelError
from rlhf.models.backbones import _from_pretrained, auto_config, finish_model, fit_embeddings
from rlhf.models.reward import gpt2_config
from rlhf.models.sharding import gathered_for_generation

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # GPT2LMHeadModel, LlamaForCausalLM, GPTNeoXForCausalLM, ...


def check_causal(cfg: Any) -> None:
    """Refuse, before anything else about it is checked, a pretrained model whose saved architecture is not a causal
    LM (e.g. this project's masked-LM or reward-model export given as a policy)."""
    name = cfg.name_or_path
    try:  # (a missing directory was already reported when its tokenizer was loaded)
        architectures = auto_config(cfg).architectures or []
    except Exception:  # noqa: BLE001 - unreadable configs are reported by the model load itself
        return
    if architectures and not any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        kind = "a masked LM" if any("MaskedLM" in a for a in architectures) else \
            "a sequence classifier (a reward model?)" if any("SequenceClassification" in a for a in architectures) \
            else "not a causal LM"
        raise ModelError(f"model.name_or_path={name!r} is {kind} ({', '.join(architectures)}); PPO and PWP need a "
                         f"causal LM (GPT-2-like) that generates text: model=tiny_gpt2, the export of an "
                         f"experiment=lm_tiny or pwp run, or a hub causal LM")


def build_causal_lm(cfg: Any, tokenizer, new_tokens: list[str] | None = None,
                    new_token_noise: float = 0.01) -> PreTrainedModel:
    """``GPT2LMHeadModel`` from the config sizes, or any causal LM (hub name, local dir, this project's LM export).

    ``new_tokens`` (e.g. conditional training's control tokens, already in the tokenizer) get embedding rows at the
    mean of the other rows plus N(0, new_token_noise^2) noise (0.01 in Korbak et al.), so they are not over-sampled before training (Korbak et al.);
    a pretrained model's embeddings are resized for them first.
    """
    cfg = as_config(BackboneConf, cfg)
    if cfg.source == "pretrained":
        check_causal(cfg)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ModelError("the policy's tokenizer needs a pad token distinct from EOS (padding would otherwise hide "
                         "real EOS tokens and shift where rewards and values are read); add one, e.g. "
                         "tokenizer.add_special_tokens({'pad_token': '<|pad|>'}), and resize the embeddings")
    if tokenizer.eos_token_id is None:
        raise ModelError("the policy's tokenizer has no EOS token; responses could never end")
    new_ids = [tokenizer.convert_tokens_to_ids(t) for t in new_tokens or []]
    if cfg.source == "pretrained":
        name = cfg.name_or_path
        model = _from_pretrained(AutoModelForCausalLM, cfg)
        fit_embeddings(model, tokenizer, name)
    elif cfg.arch != "gpt2":
        raise ModelError(f"model.arch={cfg.arch!r} is not a causal LM; use model=tiny_gpt2 "
                         f"(model.arch=gpt2) or model=pretrained with a causal LM")
    else:
        model = GPT2LMHeadModel(gpt2_config(cfg, tokenizer))
    if new_ids:
        init_new_embeddings(model, new_ids, new_token_noise)
    return finish_model(model, cfg)


def init_new_embeddings(model: PreTrainedModel, new_ids: list[int], noise: float = 0.01) -> None:
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        keep = torch.ones(embeddings.shape[0], dtype=torch.bool)
        keep[new_ids] = False
        mean = embeddings[keep].mean(0)
        for i in new_ids:
            embeddings[i] = mean + noise * torch.randn_like(mean)


def disable_dropout(module: nn.Module) -> None:
    """PPO needs deterministic forward passes: with dropout, the ratio at the first minibatch is not 1."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    config = getattr(module, "config", None)
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob",
                "dropout", "attention_dropout"):
        if config is not None and isinstance(getattr(config, key, None), float):
            setattr(config, key, 0.0)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy without gradients. Left in train mode: its dropout is off already (disable_dropout), and Lightning
    warns about modules in eval mode at the start of training."""
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref


def left_pad(rows: list[list[int]] | list[torch.Tensor], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``input_ids`` and ``attention_mask``: every row ends at the last column, where sampling continues."""
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row):] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, length - len(row):] = 1
    return input_ids, attention_mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of each left-padded row (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def trunk(model: PreTrainedModel) -> nn.Module:
    base = getattr(model, "base_model_prefix", None)
    return getattr(model, base) if base and hasattr(model, base) else model


class ValueHead(nn.Module):
    """A scalar per token from hidden states; zero-initialised (OpenAI's lm-human-preferences), so the first value
    estimates are 0 and the first advantages are the whitened returns."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden).squeeze(-1)


class Critic(nn.Module):
    """``value=separate``: its own transformer trunk and a value head. Initialised from the policy's trunk or from a
    causal reward model (its trunk and, rescaled to per-token use, its score head); the tokenizer must be the
    policy's, since the critic reads the policy's tokens."""

    def __init__(self, body: nn.Module, hidden_size: int, head_weight: torch.Tensor | None = None):
        super().__init__()
        self.body = body
        self.head = ValueHead(hidden_size)
        if head_weight is not None:
            with torch.no_grad():
                self.head.linear.weight.copy_(head_weight.reshape(1, -1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=position_ids(attention_mask)).last_hidden_state
        return self.head(hidden)


def build_critic(init: str, policy: PreTrainedModel, tokenizer) -> Critic:
    """``init='policy'``: a copy of the policy's trunk; otherwise ``init`` is a path to a causal reward model (or any
    model) sharing the policy's vocabulary."""
    hidden = policy.config.hidden_size if hasattr(policy.config, "hidden_size") else policy.config.n_embd
    if init == "policy":
        return Critic(copy.deepcopy(trunk(policy)), hidden)
    dtype = str(policy.dtype).removeprefix("torch.")  # the critic computes in the policy's dtype
    body = _from_pretrained(AutoModel, {"source": "pretrained", "name_or_path": init, "dtype": dtype})
    if body.get_input_embeddings().weight.shape[0] != len(tokenizer):
        raise ModelError(f"method.critic_init={init!r}: its vocabulary ({body.get_input_embeddings().weight.shape[0]}) "
                         f"differs from the policy's ({len(tokenizer)}); a critic reads the policy's tokens, so "
                         f"initialise it from the policy (method.critic_init=policy) or a model with its tokenizer")
    head_weight = None
    weights_file = Path(init) / "model.safetensors"
    if weights_file.exists():  # a reward model's score head is a good first value head
        from safetensors.torch import load_file

        head_weight = load_file(str(weights_file)).get("score.weight")
    size = body.config.hidden_size if hasattr(body.config, "hidden_size") else body.config.n_embd
    disable_dropout(body)
    return Critic(body, size, head_weight)


@torch.no_grad()
def sample(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           eos_token_id: int, pad_token_id: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           generator: torch.Generator | None = None, stop_early: bool = True, banned_ids: list[int] | None = None,
           row_keys: torch.Tensor | None = None, stream: int = 0, repeats: int = 1,
           compile_step: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample continuations of left-padded prompts with a KV cache; ``repeats`` continuations of each prompt
    (consecutive rows of the result), from one encoding of it: the prompts' pass and its KV cache are computed once
    and then repeated, so ``repeats=k`` samples what the prompts repeated k times would, for 1/k of the prompt work.

    Pure sampling from ``softmax(logits / T)`` by default (top_k=0, top_p=1), so the logprobs recomputed later with
    :func:`scaled_logits` are those of the sampling distribution. ``banned_ids`` (the pad token, which an untrained
    model may otherwise sample) get probability 0 here and in :func:`scaled_logits`. Rows keep sampling to the fixed length (or until every row
    has produced EOS); everything after a row's first EOS becomes pad. Returns (response ids [B, max_new_tokens],
    the sampling logprob of each token; 0 on pads).

    With ``row_keys`` (one int64 per row), the token of row ``i`` at step ``t`` is drawn by inverse CDF from the
    uniform ``counter_uniform(row_keys[i], t, stream)``: a row's sample depends on its key and its own distribution
    only, not on which batch, rank or device it is in (so 2-process DDP samples what one process with the global
    batch samples). Otherwise ``torch.multinomial`` with ``generator``.

    The new tokens' keys and values go into a cache allocated once for the whole length (transformers'
    ``StaticCache``) when the model supports one, instead of a cache grown by concatenation at every token (which
    copies the whole cache each step). ``compile_step`` also runs the one-token step through ``torch.compile``
    (compiled once per batch size and cache length, which is rounded up to a multiple of 64 to keep those few).
    """
    was_training = model.training
    model.eval()  # generation needs the KV cache, which transformers turns off in train mode under checkpointing
    try:
        with gathered_for_generation(model):  # FSDP2: each block gathered once, not once per new token
            return _sample(model, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, temperature,
                           top_k, top_p, generator, stop_early, banned_ids, row_keys, stream, repeats, compile_step)
    finally:
        model.train(was_training)


def _sample(model, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, temperature, top_k, top_p,
            generator, stop_early, banned_ids, row_keys, stream, repeats=1,
            compile_step=False) -> tuple[torch.Tensor, torch.Tensor]:
    device, prompt_length = input_ids.device, input_ids.shape[1]
    positions = position_ids(attention_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True,
                **last_logits(model, 1))  # the prompts' last position only
    last, cache, next_position = out.logits[:, -1, :], out.past_key_values, positions[:, -1] + 1
    del out  # (it would keep the prompts' cache alive beside its static copy)
    if repeats > 1:  # each prompt's encoding serves its `repeats` samples (consecutive rows)
        cache.batch_repeat_interleave(repeats)
        last, attention_mask, next_position = (x.repeat_interleave(repeats, 0)
                                               for x in (last, attention_mask, next_position))
    batch, length = attention_mask.shape[0], prompt_length + max_new_tokens
    if compile_step:  # one compilation serves every prompt length up to the same multiple of 64
        length = -(-length // 64) * 64
    static = _static_cache(model, length)  # None where the model cannot take one: the grown cache is kept
    if static is not None:
        for index, layer in enumerate(cache.layers):  # the prompts' keys and values, then the new tokens in place
            static.update(layer.keys, layer.values, index)
        cache = static
    if compile_step and static is None:
        _warn_not_compiled(type(_unwrapped(model)).__name__)
    step = _compiled_step() if static is not None and compile_step else _step
    mask = torch.zeros((batch, length), dtype=attention_mask.dtype, device=device)  # filled as tokens arrive
    mask[:, :prompt_length] = attention_mask
    tokens = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        logits = _truncate(scaled_logits(last, temperature, banned_ids), top_k, top_p)
        logp = torch.log_softmax(logits, dim=-1)
        if row_keys is None:
            token = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        else:
            token = _inverse_cdf(logp, row_keys, t, stream)
        token_logp = logp.gather(-1, token[:, None]).squeeze(-1)
        tokens[:, t] = torch.where(done, pad_token_id, token)
        logprobs[:, t] = torch.where(done, 0.0, token_logp)
        done = done | (token == eos_token_id)
        if t + 1 == max_new_tokens or (stop_early and bool(done.all())):
            break
        seen = prompt_length + t + 1  # the token fed now is at cache position seen - 1
        mask[:, seen - 1] = 1
        if static is None:  # a grown cache: the mask covers the `seen` positions it holds
            last = step(model, token[:, None], mask[:, :seen], next_position[:, None], cache)
        else:  # a static cache: the mask covers all its positions. The new token's cache position is passed for
            # earlier transformers 5 releases, whose static cache writes there; later ones count the positions they
            # hold, which is the same position, and ignore it
            last = step(model, token[:, None], mask, next_position[:, None], cache,
                        cache_position=torch.arange(seen - 1, seen, device=device))
        next_position = next_position + 1
    return tokens, logprobs


def _step(model, token, mask, position, cache, **cache_position) -> torch.Tensor:
    """One new token per row through the model, writing its keys and values into ``cache``: its next-token logits."""
    return model(input_ids=token, attention_mask=mask, position_ids=position, past_key_values=cache, use_cache=True,
                 **cache_position).logits[:, -1, :]


@functools.cache
def _compiled_step():
    """``_step`` through ``torch.compile``. The static cache fixes the shapes, so it compiles once per model, batch
    size and cache length."""
    return torch.compile(_step, dynamic=False)


def _static_cache(model: nn.Module, length: int) -> Any:
    """An empty ``StaticCache`` of ``length`` positions for the model (a peft model: its base model), or None where
    the model cannot take one: architectures transformers does not mark compilable, and models with sliding-window
    or other non-global attention layers (those keep the grown cache)."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    base = _unwrapped(model)
    if not getattr(type(base), "_can_compile_fullgraph", False):
        return None
    try:
        cache = StaticCache(config=base.config, max_cache_len=length)
    except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError):  # a config it cannot map
        return None
    return cache if all(type(layer) is StaticLayer for layer in cache.layers) else None


@functools.cache
def _warn_not_compiled(architecture: str) -> None:
    warnings.warn(f"compile_generation: {architecture} cannot decode into a static KV cache (not marked compilable by "
                  f"transformers, or it has sliding-window layers), so its decoding step runs uncompiled",
                  stacklevel=3)


def _inverse_cdf(logp: torch.Tensor, row_keys: torch.Tensor, step: int, stream: int) -> torch.Tensor:
    """One token per row: the first index whose cumulative probability exceeds a keyed uniform (tokens with
    probability 0, e.g. banned ones, are never picked)."""
    from rlhf.objectives.mlm import counter_uniform

    cdf = logp.double().exp().cumsum(-1)
    counters = torch.full_like(row_keys, step)
    u = counter_uniform(row_keys.to(torch.int64).cpu(), counters.cpu(), stream).double().to(cdf.device)
    u = (u * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=logp.shape[-1] - 1)


def _truncate(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        remove = cumulative - torch.softmax(sorted_logits, dim=-1) > top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def response_mask(responses: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """1 on real response tokens: everything up to and including the first EOS (pads after it are 0)."""
    is_eos = responses == eos_token_id
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~after_eos & (responses != pad_token_id)).long()


def forward_logits(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   prompt_length: int, output_hidden: bool = False):
    """Logits that predict each response token (positions prompt_length-1 .. end-1) of prompt+response sequences,
    with the position ids generation used; and the matching last hidden states if asked. Only those positions go
    through the output layer (``logits_to_keep``), not the prompt's."""
    positions = input_ids.shape[1] - prompt_length + 1  # the last prompt token's and every response token's
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                output_hidden_states=output_hidden, **last_logits(model, positions))
    logits = out.logits[:, -positions:-1, :]
    hidden = out.hidden_states[-1][:, prompt_length - 1:-1, :] if output_hidden else None
    return logits, hidden


def last_logits(model: nn.Module, count: int) -> dict[str, int]:
    """The forward argument that computes the output layer on the last ``count`` positions only, when the model takes
    it (every causal LM of transformers 5 does; remote code may not: then every position's, sliced after)."""
    return {"logits_to_keep": count} if _takes_logits_to_keep(type(_unwrapped(model))) else {}


def _unwrapped(model: nn.Module) -> nn.Module:
    """A peft model's base (transformers) model; any other model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@functools.cache
def _takes_logits_to_keep(cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def scaled_logits(logits: torch.Tensor, temperature: float, banned_ids: list[int] | None = None) -> torch.Tensor:
    """The logits of the sampling distribution: divided by T, banned tokens at -inf."""
    logits = logits.float() / temperature
    banned_ids = [i for i in banned_ids or () if i < logits.shape[-1]]  # a token the model lacks has probability 0
    if banned_ids:
        logits = logits.index_fill(-1, torch.tensor(banned_ids, device=logits.device), float("-inf"))
    return logits


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float,
                   banned_ids: list[int] | None = None) -> torch.Tensor:
    logp = torch.log_softmax(scaled_logits(logits, temperature, banned_ids), dim=-1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1)


@torch.no_grad()
def response_logprobs(model: PreTrainedModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      responses: torch.Tensor, real: torch.Tensor, temperature: float = 1.0,
                      banned_ids: list[int] | None = None) -> torch.Tensor:
    """Log-prob under ``model``'s sampling distribution (T, banned ids) of each real response token of left-padded
    prompts + right-padded responses (``real``: :func:`response_mask`); 0 on pads."""
    seq, seq_mask = torch.cat([prompt_ids, responses], 1), torch.cat([prompt_mask, real], 1)
    seq = torch.where(seq_mask.bool(), seq, torch.zeros_like(seq))  # pads may be ids a reference lacks (an added pad)
    logits, _ = forward_logits(model, seq, seq_mask, prompt_ids.shape[1])
    logp = token_logprobs(logits, responses, temperature, banned_ids)
    return torch.where(real.bool(), logp, torch.zeros_like(logp))
