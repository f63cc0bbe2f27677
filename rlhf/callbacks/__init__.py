"""Every callback of a run, and :func:`build_callbacks`, which makes them from the ``callbacks`` group.

The built-in callbacks are switched and tuned by typed keys (``callbacks.checkpoint.*``, ``callbacks.progress_bar``,
``callbacks.sample_ledger``, ...: see ``rlhf.config.run.CallbacksConf``); any other callback, yours or Lightning's,
is added as a ``_target_`` node in ``callbacks.extra``, e.g.
``'callbacks.extra=[{_target_: lightning.pytorch.callbacks.DeviceStatsMonitor}]'``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, RichProgressBar, TQDMProgressBar
from omegaconf import DictConfig

from rlhf.callbacks.checkpoint import AtomicCheckpointIO, RunCheckpoint, StepCheckpoint
from rlhf.callbacks.reliability import PREEMPTED_EXIT_CODE, NonFiniteGuard, Preemption, SampleLedger, StopAtStep
from rlhf.callbacks.throughput import TokenThroughput
from rlhf.errors import ConfigError

__all__ = ["PREEMPTED_EXIT_CODE", "AtomicCheckpointIO", "NonFiniteGuard", "Preemption", "RunCheckpoint",
           "SampleLedger", "StepCheckpoint", "StopAtStep", "TokenThroughput", "build_callbacks"]

PROGRESS_BARS = {"rich": lambda: RichProgressBar(leave=True), "tqdm": TQDMProgressBar, "none": None}


def build_callbacks(cfg: DictConfig, output_dir: Path, optimized_metric: str | None, enable_checkpointing: bool,
                    has_logger: bool = True) -> list[Callback]:
    """The run's callbacks, in the order they run: ``StepCheckpoint`` after every callback that records something
    at a step (so a step's checkpoint holds it, e.g. the sample ledger's line), and ``Preemption`` last (a SIGTERM
    saves after everything else of that step)."""
    ckpt = cfg.checkpoint
    checkpoints = output_dir / "checkpoints"
    callbacks: list[Callback] = []
    if enable_checkpointing:  # best-k by the monitored metric, and last.ckpt, at every validation
        monitor = (ckpt.monitor or optimized_metric) if ckpt.save_top_k else None
        callbacks.append(RunCheckpoint(dirpath=str(checkpoints), filename="best-step{step:06d}",
                                       auto_insert_metric_name=False, monitor=monitor, mode=ckpt.mode,
                                       save_top_k=ckpt.save_top_k, save_last=True))
    if PROGRESS_BARS[cfg.progress_bar] is not None:
        callbacks.append(PROGRESS_BARS[cfg.progress_bar]())
    if cfg.lr_monitor and has_logger:  # Lightning refuses a LearningRateMonitor without a logger
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.throughput:
        callbacks.append(TokenThroughput())
    if cfg.early_stopping_patience:
        if not optimized_metric:
            raise ConfigError("callbacks.early_stopping_patience needs optimized_metric (the metric to watch)")
        callbacks.append(EarlyStopping(monitor=optimized_metric, mode=ckpt.mode, patience=cfg.early_stopping_patience))
    callbacks.append(NonFiniteGuard(cfg.nonfinite.policy, cfg.nonfinite.max_consecutive))
    if cfg.stop_at_step:
        callbacks.append(StopAtStep(cfg.stop_at_step))
    if cfg.sample_ledger:
        callbacks.append(SampleLedger(output_dir))
    for i, node in enumerate(cfg.extra):
        try:
            callbacks.append(instantiate(node))
        except Exception as err:
            raise ConfigError(f"callbacks.extra[{i}] cannot be built: {err}".replace("\n", " ")) from err
    if enable_checkpointing and ckpt.every_n_train_steps:
        callbacks.append(StepCheckpoint(checkpoints, ckpt.every_n_train_steps, ckpt.keep_steps))
    callbacks.append(Preemption(checkpoints))
    return callbacks
