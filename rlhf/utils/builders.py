"""Turn the logger, callbacks and strategy groups of the config into Lightning objects."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from omegaconf import DictConfig, OmegaConf

from rlhf.errors import ConfigError
from rlhf.utils.reliability import NonFiniteGuard


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


class TokenThroughput(Callback):
    """Logs ``train/tokens_per_sec`` and ``train/samples_per_sec`` (all ranks) over each logging window."""

    def __init__(self):
        self._t0: float | None = None
        self._tokens = 0
        self._samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        import time

        if self._t0 is None:
            self._t0 = time.perf_counter()
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None:
            self._tokens += int(mask.sum()) * trainer.world_size
            self._samples += mask.shape[0] * trainer.world_size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        if (trainer.global_step % trainer.log_every_n_steps) or self._t0 is None or not self._tokens:
            return
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        pl_module.log_dict({"train/tokens_per_sec": self._tokens / elapsed,
                            "train/samples_per_sec": self._samples / elapsed}, rank_zero_only=True)
        self._t0, self._tokens, self._samples = time.perf_counter(), 0, 0


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed at every validation, even when no top-k checkpoint is
    kept (``save_top_k=0``): Lightning 2.6 would otherwise write ``last.ckpt`` only when training ends, and a
    preempted run would have nothing to resume from."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class StopAtStep(Callback):
    """Stop after a given optimizer step as if the job were preempted: validation runs, ``last.ckpt`` is saved, and
    ``ckpt_path=last`` continues on the same schedule (``trainer.max_steps`` still sets the lr decay)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def build_callbacks(cfg: DictConfig, output_dir: Path, optimized_metric: str | None,
                    enable_checkpointing: bool, has_logger: bool = True) -> list[Callback]:
    callbacks: list[Callback] = []
    ckpt = cfg.checkpoint
    if enable_checkpointing:
        monitor = ckpt.monitor or optimized_metric
        callbacks.append(RunCheckpoint(  # best-k by the monitored metric, and last.ckpt, at every validation
            dirpath=str(output_dir / "checkpoints"), filename="best-step{step:06d}", auto_insert_metric_name=False,
            monitor=monitor if ckpt.save_top_k else None, mode=ckpt.mode, save_top_k=ckpt.save_top_k,
            save_last=True))
    if cfg.progress_bar == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif cfg.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    if cfg.lr_monitor and has_logger:  # Lightning refuses a LearningRateMonitor without a logger
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.throughput:
        callbacks.append(TokenThroughput())
    if cfg.early_stopping_patience:
        if not optimized_metric:
            raise ConfigError("callbacks.early_stopping_patience needs optimized_metric (the metric to watch)")
        callbacks.append(EarlyStopping(monitor=optimized_metric, mode=ckpt.mode,
                                       patience=cfg.early_stopping_patience))
    callbacks.append(NonFiniteGuard(cfg.nonfinite.policy, cfg.nonfinite.max_consecutive))
    if cfg.stop_at_step:
        callbacks.append(StopAtStep(cfg.stop_at_step))
    if cfg.sample_ledger:
        from rlhf.utils.reliability import SampleLedger

        callbacks.append(SampleLedger(output_dir))
    if enable_checkpointing and ckpt.every_n_train_steps:
        from rlhf.utils.reliability import StepCheckpoint

        # step<N>.ckpt and last.ckpt every N steps from the first, whatever is monitored; last of the callbacks, so the
        # step's checkpoint holds what every other callback did at that step (e.g. the sample ledger's line)
        callbacks.append(StepCheckpoint(output_dir / "checkpoints", ckpt.every_n_train_steps, ckpt.keep_steps))
    return callbacks


def build_strategy(cfg: DictConfig, accelerator: str) -> Any:
    """A Lightning strategy object (or ``"auto"``) from ``rlhf.config.StrategyConf``."""
    name = cfg.name
    if name == "auto":
        return "auto"
    timeout = timedelta(minutes=cfg.timeout_minutes)
    if name in ("fsdp", "deepspeed") and accelerator == "cpu":
        raise ConfigError(f"strategy={name} needs GPUs (Lightning refuses it on CPU); on CPU use strategy=ddp or "
                          f"strategy=ddp_spawn with trainer.devices=2")
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
    return loggers


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The trainer group as keyword arguments (``None`` values left to Lightning's defaults)."""
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    kwargs.pop("_target_", None)
    return {k: v for k, v in kwargs.items() if v is not None or k in ("gradient_clip_val", "check_val_every_n_epoch")}
