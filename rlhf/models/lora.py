"""Low-rank adapters (``model.lora``, Hu et al. 2021) with the ``peft`` library.

- :func:`apply_lora` wraps a built backbone: its weights are frozen, adapters on ``target_modules`` are trained (and,
  for a reward model, the score head, which peft's ``SEQ_CLS`` task keeps trainable).
- :func:`adapters_disabled` gives the base model back for the duration of a block: PPO's (and every reference-based
  method's) frozen reference is the policy with its adapters off, so no second copy of the weights is held.
- :func:`trainable_state` keeps a checkpoint to the trained weights (the frozen base is rebuilt from
  ``model.name_or_path`` when a run resumes).
- :func:`export_model` is what an export saves: the adapters merged into a copy of the base (a plain transformers
  model, the default) or the adapter alone (``model.lora.export=adapter``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from rlhf.errors import ConfigError


def _peft():
    try:
        import peft
    except ImportError as err:
        raise ConfigError("model.lora.r > 0 needs the peft package: pip install -e '.[lora]'") from err
    return peft


def task_type(model: nn.Module) -> str | None:
    """peft's task for a transformers class: causal LM, sequence classifier (reward model), or none (encoders)."""
    name = type(model).__name__
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "CAUSAL_LM"
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return None


def apply_lora(model: nn.Module, lora: Any) -> nn.Module:
    """``model`` wrapped in adapters of rank ``lora.r`` (a ``LoraConf``); the base weights no longer train."""
    peft = _peft()
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    config = peft.LoraConfig(r=int(lora.r), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
                             target_modules=targets, task_type=task_type(model))
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # e.g. target modules that the model does not have
        raise ConfigError(f"model.lora: {err}".replace("\n", " ")) from err


def is_lora(model: nn.Module | None) -> bool:
    return model is not None and hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The base model (adapters off) inside the block; ``model`` unchanged after it."""
    with model.disable_adapter():
        yield model


@contextlib.contextmanager
def reference_of(model: nn.Module, ref: nn.Module | None) -> Iterator[nn.Module]:
    """The frozen reference policy inside the block: ``ref`` when one is held, else (LoRA) ``model`` with its
    adapters off."""
    if ref is not None:
        yield ref
    else:
        with adapters_disabled(model):
            yield model


def trainable_state(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` without the frozen parameters of ``module`` (buffers are kept): a LoRA checkpoint holds the
    adapters, the trained heads, the method's own state, not the base model."""
    frozen = {p.data_ptr() for p in module.parameters() if not p.requires_grad}  # tied weights under two names too
    return {k: v for k, v in state_dict.items() if v.data_ptr() not in frozen}


def export_model(model: nn.Module, how: str, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """What an export saves: ``merged``, a copy of the base with the adapters folded in (loads with plain
    transformers); ``adapter``, the adapter itself (``save_pretrained`` of a peft model writes only it). ``state``:
    the gathered whole weights of a sharded ``model``, which cannot be copied; the merged copy is then rebuilt whole
    from them."""
    if not is_lora(model) or how == "adapter":
        return model
    return (copy.deepcopy(model) if state is None else _whole_copy(model, state)).merge_and_unload()


def _whole_copy(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """An unsharded twin of the sharded peft ``model`` (the same class, config and adapters) holding ``state``."""
    from torch.distributed.fsdp import FSDPModule

    base = model.get_base_model()
    cls = next(c for c in type(base).__mro__ if not issubclass(c, FSDPModule))  # fully_shard subclasses the model
    twin = _peft().get_peft_model(cls(base.config), copy.deepcopy(model.peft_config["default"]))
    twin.load_state_dict(state)
    return twin
