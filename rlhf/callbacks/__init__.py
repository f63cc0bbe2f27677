"""Every callback of a run, and :func:`build_callbacks`, which instantiates them from the ``callbacks`` group.

Each callback is a ``_target_`` node of ``callbacks`` (schemas: ``rlhf.config.run.CallbacksConf``; YAML:
``rlhf/conf/callbacks/``): ``callbacks.<name>.<arg>=...`` tunes one, ``callbacks.<name>=null`` turns it off,
``callbacks=[default,early_stopping]`` adds an optional one, and ``callbacks.extra`` takes any other, yours or
Lightning's, e.g. ``'callbacks.extra=[{_target_: lightning.pytorch.callbacks.DeviceStatsMonitor}]'``.

Ours, each kept where Lightning's own does not do the job (the reason is in each docstring): ``RunCheckpoint``
(``last.ckpt`` at every validation, step checkpoints), ``AtomicCheckpointIO`` (no half-written file),
``Preemption`` (exact resume after SIGTERM), ``NonFiniteGuard``, ``SampleLedger``, ``StopAtStep``,
``TokenThroughput``.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, Checkpoint, LearningRateMonitor, ProgressBar

from rlhf.callbacks.checkpoint import AtomicCheckpointIO, RunCheckpoint
from rlhf.callbacks.reliability import PREEMPTED_EXIT_CODE, NonFiniteGuard, Preemption, SampleLedger, StopAtStep
from rlhf.callbacks.throughput import TokenThroughput
from rlhf.errors import ConfigError

__all__ = ["PREEMPTED_EXIT_CODE", "AtomicCheckpointIO", "NonFiniteGuard", "Preemption", "RunCheckpoint",
           "SampleLedger", "StopAtStep", "TokenThroughput", "build_callbacks", "instantiate_node"]


def instantiate_node(node: Any, key: str, **runtime: Any) -> Any:
    """``hydra.utils.instantiate`` with the failure as a ``ConfigError`` naming the config key."""
    try:
        return instantiate(node, **runtime)
    except Exception as err:
        raise ConfigError(f"{key} cannot be built: {err}".replace("\n", " ")) from err


def build_callbacks(cfg: Any, enable_checkpointing: bool, enable_progress_bar: bool,
                    has_logger: bool) -> list[Callback]:
    """Every non-null node of ``callbacks``, then ``callbacks.extra``, in order (Lightning moves checkpoint callbacks
    last). Left out, as Lightning refuses them: checkpoint callbacks with ``trainer.enable_checkpointing=false``, a
    progress bar with ``trainer.enable_progress_bar=false``, a learning-rate monitor without a logger."""
    built = [instantiate_node(node, f"callbacks.{key}") for key, node in cfg.items() if key != "extra" and node]
    built += [instantiate_node(node, f"callbacks.extra[{i}]") for i, node in enumerate(cfg.extra)]
    refused = ((Checkpoint, enable_checkpointing), (ProgressBar, enable_progress_bar),
               (LearningRateMonitor, has_logger))
    return [callback for callback in built if all(ok or not isinstance(callback, kind) for kind, ok in refused)]
