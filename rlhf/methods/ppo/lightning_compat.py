"""The one place PPO reaches into Lightning's loop internals (checked by ``tests/test_ppo.py``)."""

from __future__ import annotations

import lightning.pytorch as pl


def count_iteration(trainer: pl.Trainer) -> None:
    """Count one optimizer step in ``trainer.global_step`` for a module with manual optimization.

    PPO steps its raw optimizers (``optimizers(use_pl_optimizer=False)``) ``ppo_epochs x num_minibatches`` times per
    iteration, which Lightning does not count; one iteration is counted as one step instead, so ``max_steps``,
    ``val_check_interval`` and checkpoint names are in iterations. Lightning has no public call for this: the count
    is the manual-optimization loop's ``optim_step_progress`` (``global_step`` reads its ``total.completed``)."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()
