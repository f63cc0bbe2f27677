"""The places PPO reaches into Lightning's internals: its loop's step count, and the checkpoints of when PPO had two
optimizers (both checked by ``tests/test_ppo.py``)."""

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


def one_optimizer(checkpoint: dict) -> None:
    """Rewrite, in place, a checkpoint written when PPO had two optimizers (the policy's, then the value model's; up
    to 2026-11-30) into the one optimizer it has now, whose groups are the policy's then the value model's: the
    saved states are concatenated in that order, so the run resumes with every moment and lr where it was."""
    states = checkpoint.get("optimizer_states", [])
    if len(states) != 2:
        return
    policy, value = states
    offset = sum(len(group["params"]) for group in policy["param_groups"])
    checkpoint["optimizer_states"] = [{
        "state": {**policy["state"], **{index + offset: v for index, v in value["state"].items()}},
        "param_groups": [*policy["param_groups"],
                         *({**group, "params": [index + offset for index in group["params"]]}
                           for group in value["param_groups"])]}]
    schedulers = checkpoint.get("lr_schedulers", [])
    if len(schedulers) == 2:  # per-group lists (base_lrs, _last_lr, lr_lambdas) concatenated, the rest is shared
        first, second = schedulers
        checkpoint["lr_schedulers"] = [{key: value + second[key] if isinstance(value, list) else value
                                        for key, value in first.items()}]
