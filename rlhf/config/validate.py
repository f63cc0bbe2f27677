"""Validation of a composed config, before anything is built. Ranges and choices are declared once, in field
metadata (``spec``); cross-field rules live in each schema's ``check``; rules across groups in the method's
``run_problems`` (``rlhf.config.registry.METHODS``)."""

from __future__ import annotations

import os
from dataclasses import fields, is_dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from rlhf.config.fields import range_problem
from rlhf.config.hints import suggest_key
from rlhf.config.registry import method_of
from rlhf.config.run import strategy_kind
from rlhf.errors import ConfigError


def _walk(node: DictConfig, prefix: str, errors: list[str]) -> None:
    schema = OmegaConf.get_type(node)
    if schema is not None and is_dataclass(schema):
        for f in fields(schema):
            if f.name.startswith("_") or f.name not in node:
                continue
            if OmegaConf.is_missing(node, f.name):
                continue
            value = node[f.name]
            if isinstance(value, (DictConfig, ListConfig)):
                continue
            problem = range_problem(value, f.metadata)
            if problem:
                hint = f" ({f.metadata['help']})" if f.metadata.get("help") else ""
                errors.append(f"{prefix}{f.name}={value!r} {problem}{hint}")
        allowed = [f.name for f in fields(schema)]
        for key in node.keys():
            if key not in allowed and not (key == "hydra" and not prefix):
                errors.append(f"{prefix}{key} is not a known key of {prefix.rstrip('.') or 'the config'}."
                              f"{suggest_key(str(key), allowed)} Allowed: {', '.join(allowed)}")
        if hasattr(schema, "check"):
            try:
                obj = OmegaConf.to_object(node)
            except Exception:  # a missing value elsewhere; reported by resolve below
                obj = None
            if obj is not None:
                for key, message in obj.check():
                    errors.append(f"{prefix}{key}{'' if message.startswith('=') else ' '}{message}")
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue
        if isinstance(key, str) and not OmegaConf.is_missing(node, key):
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none():
                _walk(child, f"{prefix}{key}.", errors)


def resolved_config(cfg: DictConfig) -> dict:
    """The resolved config as plain containers, without Hydra's own ``hydra`` node."""
    return {key: OmegaConf.to_container(cfg._get_node(key), resolve=True, throw_on_missing=True)
            if isinstance(cfg._get_node(key), (DictConfig, ListConfig)) else cfg[key]
            for key in cfg.keys() if key != "hydra"}




def validate_config(cfg: DictConfig) -> None:
    """Fail before anything is built: unresolvable interpolations, missing values, out-of-range values, unknown keys
    (with did-you-mean hints), each schema's own ``check`` and the rules across groups."""
    try:
        resolved_config(cfg)
    except Exception as err:  # omegaconf errors carry full_key
        key = getattr(err, "full_key", None)
        raise ConfigError(f"config key '{key}': {err}".replace("\n", " ")) from err
    errors: list[str] = []
    _walk(cfg, "", errors)
    method = method_of(cfg)
    if method is not None and "data" in cfg:
        data_type = OmegaConf.get_type(cfg.data)
        if data_type is not method.data_schema:
            errors.append(f"data: the selected dataset ({getattr(data_type, '__name__', data_type)}) does not "
                          f"feed method={method.name}; pick a data option made for it")
        elif method.run_problems is not None and not errors:
            errors.extend(method.run_problems(cfg))
    errors.extend(_device_problems(cfg))
    errors.extend(_final_weights_problems(cfg))
    errors.extend(_push_problems(cfg))
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))


def _push_problems(cfg: DictConfig) -> list[str]:
    """push_to_hub needs an export and the network: said before training, not after it."""
    if not cfg.push_to_hub:
        return []
    if not cfg.export:
        return [f"push_to_hub={cfg.push_to_hub} needs export=true (the export is what is pushed)"]
    offline = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v, "").lower() in
               ("1", "true", "yes", "on")]
    if offline:
        return [f"push_to_hub={cfg.push_to_hub} needs the network, but {offline[0]}=1 is set: unset it, or drop "
                f"push_to_hub and upload the export later (hf upload {cfg.push_to_hub} <run dir>/export)"]
    return []


def _final_weights_problems(cfg: DictConfig) -> list[str]:
    """final_weights=best needs a checkpoint ranked by a metric, which needs checkpointing and a monitored metric."""
    if cfg.final_weights != "best" or not cfg.train:
        return []
    if not cfg.trainer.enable_checkpointing:
        return ["final_weights=best needs trainer.enable_checkpointing=true (the best weights are read back from "
                "their checkpoint)"]
    ckpt = cfg.callbacks.checkpoint
    if not (ckpt.monitor or cfg.optimized_metric) or not ckpt.save_top_k:
        return ["final_weights=best needs a metric that ranks checkpoints: set optimized_metric (or "
                "callbacks.checkpoint.monitor) and callbacks.checkpoint.save_top_k >= 1"]
    return []


def _device_problems(cfg: DictConfig) -> list[str]:
    """The strategy must run on the chosen device (Lightning refuses FSDP and DeepSpeed on CPU)."""
    name, accelerator = strategy_kind(cfg.strategy), str(cfg.trainer.accelerator)
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if name in ("fsdp", "deepspeed") and accelerator == "cpu":
        return [f"strategy={name} needs GPUs (trainer.accelerator={cfg.trainer.accelerator} runs on CPU here); on "
                f"CPU use strategy=ddp or strategy=fsdp2"]
    return []
