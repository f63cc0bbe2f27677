"""Turn the logger, callbacks and strategy groups of the config into Lightning objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from rlhf.callbacks import AtomicCheckpointIO, build_callbacks, instantiate_node
from rlhf.config.run import strategy_kind
from rlhf.errors import ConfigError


def teardown_distributed(barrier: bool = True) -> None:
    """Barrier and destroy the process group once the run's last stage is done: avoids gloo's sporadic abort at
    interpreter exit. Not between fit and test: Lightning reuses the group, and re-creating it on the same port
    races (rank 1 can reach rank 0's closing store and fail with 'Failed to recv, got 0 bytes'). After a failure,
    no barrier (the other ranks may never reach it): the group is only destroyed, so the next job of a sweep in the
    same process starts clean."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def build_strategy(cfg: DictConfig) -> Any:
    """The ``strategy`` node's Lightning strategy (``"auto"`` when it has no ``_target_``); checked against the
    accelerator by ``validate_config``."""
    kind = strategy_kind(cfg)
    if kind == "auto":
        return "auto"
    if kind == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError as err:
            raise ConfigError("strategy=deepspeed needs the deepspeed package: pip install deepspeed") from err
    return instantiate_node(cfg, "strategy")


def build_loggers(cfg: DictConfig, output_dir: Path, method: str, tags: list[str], group: str, seed: int,
                  resume_id: str | None) -> list:
    """Every non-null node of ``logger``, then ``logger.extra``. W&B's run-time fields come from the run: its
    directory and name (the run dir), tags, group and job type (when the config leaves them null), and the id of the
    run being resumed."""
    loggers = []
    for key, node in cfg.items():
        if key == "extra" or not node:
            continue
        runtime: dict[str, Any] = {}
        if key == "wandb":
            # group: the config's, else W&B's own WANDB_RUN_GROUP (rlhf-pipeline sets it: one group per pipeline),
            # else the experiment or method; the run name says what ran
            runtime = dict(save_dir=str(output_dir), name=f"{group.split('/')[0]}-seed{seed}-{output_dir.name}",
                           tags=list(tags), group=node.group or os.environ.get("WANDB_RUN_GROUP") or group,
                           job_type=node.job_type or method)
            if resume_id:
                runtime.update(id=resume_id, resume="allow")
        loggers.append(instantiate_node(node, f"logger.{key}", **runtime))
    loggers += [instantiate_node(node, f"logger.extra[{i}]") for i, node in enumerate(cfg.extra)]
    return loggers


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The trainer group as keyword arguments (``None`` values left to Lightning's defaults)."""
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    kwargs.pop("_target_", None)
    return {k: v for k, v in kwargs.items() if v is not None or k in ("gradient_clip_val", "check_val_every_n_epoch")}


def build_trainer(cfg: DictConfig, output_dir: Path, method: str, manual_optimization: bool,
                  resume_id: str | None) -> pl.Trainer:
    """The Lightning Trainer of a run: the ``trainer`` group's arguments with its strategy, loggers and callbacks.
    A module that steps its own optimizers (PPO) clips its own gradients (``method.max_grad_norm``), so the trainer's
    clipping is left out for it (Lightning refuses it with manual optimization)."""
    group = cfg.experiment_name or method
    if HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
        group = f"{group}/{Path(HydraConfig.get().sweep.dir).name}"
    loggers = build_loggers(cfg.logger, output_dir, method, list(cfg.tags), group, cfg.seed, resume_id)
    kwargs = trainer_kwargs(cfg.trainer)
    callbacks = build_callbacks(cfg.callbacks, kwargs["enable_checkpointing"], kwargs["enable_progress_bar"],
                                has_logger=bool(loggers))
    kwargs["default_root_dir"] = kwargs.get("default_root_dir") or str(output_dir)
    # no progress bar among the callbacks (callbacks.progress_bar=null) means none: Lightning would add its default
    kwargs["enable_progress_bar"] = any(isinstance(c, ProgressBar) for c in callbacks)
    if manual_optimization:
        kwargs.pop("gradient_clip_val", None)
        kwargs.pop("gradient_clip_algorithm", None)
    # sharded strategies write checkpoints their own way (a directory per checkpoint); the atomic file IO is for ours
    plugins = [] if strategy_kind(cfg.strategy) in ("deepspeed", "fsdp") else [AtomicCheckpointIO()]
    return pl.Trainer(**kwargs, strategy=build_strategy(cfg.strategy), callbacks=callbacks,
                      logger=loggers or False, plugins=plugins)
