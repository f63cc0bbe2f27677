"""Turn the logger, callbacks and strategy groups of the config into Lightning objects."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rlhf.callbacks import AtomicCheckpointIO, build_callbacks
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
    """A Lightning strategy object (or ``"auto"``) from ``rlhf.config.run.StrategyConf`` (checked against the
    accelerator by ``validate_config``)."""
    name = cfg.name
    if name == "auto":
        return "auto"
    timeout = timedelta(minutes=cfg.timeout_minutes)
    if name in ("ddp", "ddp_spawn", "ddp_fork"):
        from lightning.pytorch.strategies import DDPStrategy

        start_method = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork"}[name]
        return DDPStrategy(start_method=start_method, process_group_backend=cfg.process_group_backend,
                           find_unused_parameters=cfg.find_unused_parameters, timeout=timeout)
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        return FSDPStrategy(sharding_strategy=cfg.sharding_strategy, process_group_backend=cfg.process_group_backend,
                            timeout=timeout)
    if name == "deepspeed":
        from lightning.pytorch.strategies import DeepSpeedStrategy

        try:
            import deepspeed  # noqa: F401
        except ImportError as err:
            raise ConfigError("strategy=deepspeed needs the deepspeed package: pip install deepspeed") from err
        return DeepSpeedStrategy(stage=cfg.stage, offload_optimizer=cfg.offload_optimizer,
                                 offload_parameters=cfg.offload_parameters, timeout=timeout)
    raise ConfigError(f"strategy.name={name!r} is not known")


def build_loggers(cfg: DictConfig, output_dir: Path, name: str, tags: list[str], group: str | None,
                  resume_id: str | None) -> list:
    loggers = []
    if cfg.wandb is not None:
        from lightning.pytorch.loggers import WandbLogger

        w = cfg.wandb
        kwargs: dict[str, Any] = dict(project=w.project, entity=w.entity, group=w.group or group,
                                      job_type=w.job_type or name, tags=list(tags), save_dir=str(output_dir),
                                      log_model=w.log_model, name=output_dir.name)
        if w.mode == "disabled":
            kwargs["mode"] = "disabled"
        else:
            kwargs["offline"] = w.mode in ("offline", "dryrun")
        if resume_id:
            kwargs.update(id=resume_id, resume="allow")
        loggers.append(WandbLogger(**kwargs))
    if cfg.csv:
        from lightning.pytorch.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv"))
    for i, node in enumerate(cfg.extra):  # any other Lightning logger, by its _target_
        try:
            loggers.append(instantiate(node))
        except Exception as err:
            raise ConfigError(f"logger.extra[{i}] cannot be built: {err}".replace("\n", " ")) from err
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
    loggers = build_loggers(cfg.logger, output_dir, method, list(cfg.tags), group, resume_id)
    callbacks = build_callbacks(cfg.callbacks, output_dir, cfg.optimized_metric, cfg.trainer.enable_checkpointing,
                                has_logger=bool(loggers))
    kwargs = trainer_kwargs(cfg.trainer)
    kwargs["default_root_dir"] = kwargs.get("default_root_dir") or str(output_dir)
    if cfg.callbacks.progress_bar == "none":
        kwargs["enable_progress_bar"] = False
    if manual_optimization:
        kwargs.pop("gradient_clip_val", None)
        kwargs.pop("gradient_clip_algorithm", None)
    # sharded strategies write checkpoints their own way (a directory per checkpoint); the atomic file IO is for ours
    plugins = [] if str(cfg.strategy.name).startswith(("deepspeed", "fsdp")) else [AtomicCheckpointIO()]
    return pl.Trainer(**kwargs, strategy=build_strategy(cfg.strategy), callbacks=callbacks,
                      logger=loggers or False, plugins=plugins)
