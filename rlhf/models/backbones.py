"""Backbones: a small model built from config (offline default) or ``from_pretrained`` (hub name or local dir)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedModel,
    RoFormerConfig,
    RoFormerForMaskedLM,
    RoFormerForSequenceClassification,
)

from rlhf.config.common import BackboneConf
from rlhf.config.fields import as_config
from rlhf.errors import ModelError
from rlhf.utils.fields import missing_local_dir

# Encoders built from config: the HF classes per architecture. RoFormer is BERT with rotary position embeddings
# (Su et al. 2021): the same blocks, relative positions, and an embedding_size that must be given.
ENCODERS = {
    "bert": (BertConfig, BertForMaskedLM, BertForSequenceClassification),
    "roformer": (RoFormerConfig, RoFormerForMaskedLM, RoFormerForSequenceClassification),
}


def encoder_config(cfg: Any, tokenizer, **extra):
    """The ``model.arch`` encoder's HF config from the backbone sizes (``extra``: e.g. ``num_labels=1``)."""
    cfg = as_config(BackboneConf, cfg)
    arch = cfg.arch
    if arch == "roformer":
        extra.setdefault("embedding_size", cfg.hidden_size)
    return ENCODERS[arch][0](
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.attention_dropout, pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=2, **extra)


def load_options(cfg: Any) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments from the backbone settings (``BackboneConf``); unset ones left out."""
    cfg = as_config(BackboneConf, cfg)
    options = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code or None,
               "attn_implementation": cfg.attn_implementation,
               "dtype": cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)}
    return {k: v for k, v in options.items() if v is not None}


def auto_config(cfg: Any, name: str | None = None):
    """The saved ``AutoConfig`` of a pretrained backbone (``name``: another checkpoint than ``model.name_or_path``)."""
    from transformers import AutoConfig

    options = load_options(cfg)
    return AutoConfig.from_pretrained(name or cfg.name_or_path, revision=options.get("revision"),
                                      trust_remote_code=bool(options.get("trust_remote_code")))


def _from_pretrained(auto_class, cfg: Any, name: str | None = None, **kwargs) -> PreTrainedModel:
    """``auto_class`` from ``model.name_or_path`` (or ``name``) with the backbone's load options (revision, dtype,
    attention kernel, remote code); ``model.random_init``: the architecture with fresh weights."""
    cfg = as_config(BackboneConf, cfg)
    name = name or cfg.name_or_path
    missing = missing_local_dir(name, "model.name_or_path")
    if missing:
        raise ModelError(missing)
    options = {**load_options(cfg), **kwargs}
    try:
        if cfg.random_init or torch.empty(0).is_meta:  # (meta: a rank that receives its weights from rank 0)
            config = auto_config(cfg, name)
            for key, value in kwargs.items():
                setattr(config, key, value)
            options.pop("revision", None)
            if options.get("dtype") == "auto":  # a fresh model has no saved dtype; one on the meta device, its own
                options["dtype"] = config.dtype if not cfg.random_init and config.dtype is not None else None
                if options["dtype"] is None:
                    options.pop("dtype")
            model = auto_class.from_config(config, **{k: v for k, v in options.items() if k not in kwargs})
        else:
            model = auto_class.from_pretrained(name, **options)
        # from_pretrained returns the model in eval mode, and Lightning keeps each submodule's mode at the start of
        # fit: without train() a pretrained backbone would be fine-tuned with its dropout silently off.
        return model.train()
    except Exception as err:
        reason = str(err).splitlines()[0][:300]
        if "Unrecognized configuration class" in reason:
            kind = type(err).__name__
            reason = (f"{kind}: its architecture is not a {auto_class.__name__.replace('AutoModelFor', '')} model; "
                      f"method=mlm needs an encoder (BERT-like); causal LMs (GPT-2-like) are for method=pwp, ppo "
                      f"or reward")
            raise ModelError(f"model.name_or_path={name!r} could not be loaded as {auto_class.__name__} ({reason})") \
                from err
        raise ModelError(f"model.name_or_path={name!r} could not be loaded as {auto_class.__name__} ({reason}). "
                         f"Offline? Pass a local directory written by save_pretrained (e.g. another run's export/)") \
            from err


def finish_model(model: PreTrainedModel, cfg: Any) -> PreTrainedModel:
    """What every built backbone gets last: ``model.dtype`` for a model built from config (a loaded one was loaded in
    it), ``model.gradient_checkpointing``, and ``model.lora`` (the model comes back wrapped in adapters)."""
    cfg = as_config(BackboneConf, cfg)
    if cfg.source == "config" and cfg.dtype not in ("auto", "float32"):
        model = model.to(getattr(torch, cfg.dtype))
    if cfg.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ModelError(f"model.gradient_checkpointing=true: {type(model).__name__} does not support it")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.r:
        from rlhf.models.lora import apply_lora

        model = apply_lora(model, cfg.lora)
    return model


def fit_embeddings(model: PreTrainedModel, tokenizer, name: str) -> None:
    """Grow the embeddings of a pretrained ``model`` for tokens added to its tokenizer (a pad token the hub model
    lacked, control tokens); new rows start at the mean of the others (transformers' mean resizing). A tokenizer
    with more *ordinary* tokens than the model has rows is the wrong tokenizer: that is an error."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        if not all(i in added for i in range(rows, len(tokenizer))):
            raise ModelError(f"tokenizer/model mismatch: the tokenizer has {len(tokenizer)} tokens but {name} has "
                             f"{rows} embedding rows; use the tokenizer saved with the model "
                             f"(model.tokenizer.kind=pretrained, model.tokenizer.name_or_path={name})")
        on_meta = model.get_input_embeddings().weight.is_meta  # (a rank that receives rank 0's weights: no values)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=not on_meta)
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


def build_classifier(cfg: Any, tokenizer, labels: list[str]) -> PreTrainedModel:
    """A sequence classifier over ``labels`` (``id2label`` in its config): ``BertForSequenceClassification`` or
    ``RoFormerForSequenceClassification`` from the config sizes, or any pretrained encoder with a new head."""
    cfg = as_config(BackboneConf, cfg)
    names = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
             "label2id": {label: i for i, label in enumerate(labels)}}
    if cfg.source == "pretrained":
        from transformers import AutoModelForSequenceClassification

        model = _from_pretrained(AutoModelForSequenceClassification, cfg, **names)
        fit_embeddings(model, tokenizer, cfg.name_or_path)
        model.config.problem_type = "single_label_classification"
        return finish_model(model, cfg)
    if cfg.arch not in ENCODERS:
        raise ModelError(f"model.arch={cfg.arch!r} is not an encoder; use model=tiny_roformer, tiny_bert or a "
                         f"pretrained encoder for method=classify")
    model = ENCODERS[cfg.arch][2](encoder_config(cfg, tokenizer, **names))
    model.config.problem_type = "single_label_classification"
    return finish_model(model, cfg)


def build_masked_lm(cfg: Any, tokenizer) -> PreTrainedModel:
    """A masked-LM: ``BertForMaskedLM`` or ``RoFormerForMaskedLM`` from the config sizes, or any ``AutoModelForMaskedLM`` checkpoint."""
    cfg = as_config(BackboneConf, cfg)
    if cfg.source == "pretrained":
        name = cfg.name_or_path
        model = _from_pretrained(AutoModelForMaskedLM, cfg)
        fit_embeddings(model, tokenizer, name)
        return finish_model(model, cfg)
    arch = cfg.arch
    if arch not in ENCODERS:
        raise ModelError(f"model.arch={arch!r} cannot do masked-LM; use model.arch=roformer or model.arch=bert")
    if tokenizer.mask_token_id is None:
        raise ModelError("the tokenizer has no [MASK] token; masked-LM needs a wordpiece tokenizer "
                         "(model.tokenizer.algorithm=wordpiece)")
    return finish_model(ENCODERS[arch][1](encoder_config(cfg, tokenizer)), cfg)
