"""Reward models: a transformer with a one-output head, exported as ``AutoModelForSequenceClassification``.

Where the score is read: causal LMs (GPT-2 style) read the last real token (the EOS we append), found from the pad
id, which therefore must differ from EOS. Encoders read ``[CLS]`` (BERT through its pooler, RoFormer/RoBERTa through
their dense + tanh classification head). Both are
correct for right padding; :func:`reward_scores` moves left-padded rows to right padding first, so any padding gives
the same scores (tested), and a plain-transformers user of the export should pad on the right.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedModel,
)

from rlhf.config.common import BackboneConf
from rlhf.config.fields import as_config
from rlhf.errors import ModelError
from rlhf.models.backbones import ENCODERS, _from_pretrained, auto_config, encoder_config, finish_model, fit_embeddings


def gpt2_config(cfg: Any, tokenizer, **extra) -> GPT2Config:
    cfg = as_config(BackboneConf, cfg)
    return GPT2Config(
        vocab_size=len(tokenizer), n_embd=cfg.hidden_size, n_layer=cfg.num_layers,
        n_head=cfg.num_heads, n_inner=cfg.intermediate_size,
        n_positions=cfg.max_position_embeddings, resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout, attn_pdrop=cfg.attention_dropout,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **extra)


def is_causal(model: PreTrainedModel) -> bool:
    return not getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "score")


def reward_head(model: PreTrainedModel) -> torch.nn.Linear:
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
        # RoFormer, RoBERTa, DeBERTa-v2, ...: dense + tanh + out_proj on [CLS]; the one-output layer is out_proj
        if isinstance(getattr(head, "out_proj", None), torch.nn.Linear):
            return head.out_proj
    raise ModelError(f"{type(model).__name__} has no linear score/classifier head")


def init_reward_head(model: PreTrainedModel) -> None:
    """N(0, 1/sqrt(d+1)) weights, zero bias (Stiennon et al. 2020; OpenAI's lm-human-preferences)."""
    head = reward_head(model)
    torch.nn.init.normal_(head.weight, std=1.0 / math.sqrt(head.in_features + 1))
    if head.bias is not None:
        torch.nn.init.zeros_(head.bias)


def build_reward_model(cfg: Any, tokenizer) -> PreTrainedModel:
    """One-output sequence classifier from the backbone config, or from any checkpoint (an MLM export, a hub
    encoder or causal LM, or an earlier reward model, whose head is then kept)."""
    cfg = as_config(BackboneConf, cfg)
    if cfg.source == "pretrained":
        name = cfg.name_or_path
        already_reward_model = False
        try:
            architectures = auto_config(cfg).architectures or []
            already_reward_model = any(a.endswith("ForSequenceClassification") for a in architectures)
        except Exception:  # reported by the load below
            pass
        random_init = bool(cfg.random_init)
        model = _from_pretrained(AutoModelForSequenceClassification, cfg, num_labels=1)
        already_reward_model = already_reward_model and not random_init
        fit_embeddings(model, tokenizer, name)
        if not already_reward_model:
            init_reward_head(model)
    elif cfg.arch == "gpt2":
        model = GPT2ForSequenceClassification(gpt2_config(cfg, tokenizer, num_labels=1))
        init_reward_head(model)
    else:
        model = ENCODERS[cfg.arch][2](encoder_config(cfg, tokenizer, num_labels=1))
        init_reward_head(model)
    if is_causal(model) and tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ModelError("a causal reward model needs a pad token distinct from EOS (the score is read at the last "
                         "non-pad token); add one to the tokenizer, e.g. tokenizer.add_special_tokens("
                         "{'pad_token': '<|pad|>'}), and resize the embeddings")
    model.config.problem_type = "regression"
    return finish_model(model, cfg)


def reward_scores(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One score per sequence, whatever the padding: rows are first moved to right padding (real tokens first, in
    order), where HF's encoders read ``[CLS]`` at position 0, positions start at 0, and causal models find their
    last real token from the pad id."""
    if bool((attention_mask[:, 0] == 0).any()):
        order = torch.argsort((attention_mask == 0).to(torch.int8), dim=1, stable=True)
        input_ids, attention_mask = input_ids.gather(1, order), attention_mask.gather(1, order)
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1)
