"""Faults during training: preemption, non-finite values, and the record of what was trained on.

- :class:`Preemption` turns SIGTERM (SLURM preemption and time limit, Kubernetes, ``kill``) into a stop at the next
  step boundary with a resumable ``last.ckpt``; ``rlhf-train`` then closes W&B and exits with status 143.
- :class:`NonFiniteGuard` (used by every method's optimizer step) catches a NaN/Inf loss or gradient before the
  optimizer step: ``abort`` (default) saves a checkpoint of the state before the fault and stops with a message
  naming the step and the metric; ``skip`` leaves parameters and optimizer state unchanged, counts the skip
  (``train/nonfinite_skipped``) and aborts after ``max_consecutive`` skips in a row.
- :class:`SampleLedger` records the dataset indices of every training batch (checks exact resume);
  :class:`StopAtStep` stops as if preempted after a given step.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from rlhf.errors import NonFiniteError

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a job stopped by SIGTERM


class Preemption(Callback):
    """Stop at a step boundary on SIGTERM, SIGUSR1 or SIGUSR2 (``signals``) and save ``checkpoints/last.ckpt``.

    SIGTERM is what SLURM (preemption, time limit), Kubernetes and ``kill`` send; SIGUSR1 is SLURM's warning before the
    time limit (``--signal=USR1@90``, what Lightning's SLURM auto-requeue listens to) and SIGUSR2 submitit's (Hydra's
    ``launcher=slurm``). At train start this callback takes these signals over from Lightning's and the launcher's
    handlers (Lightning's would stop only at an epoch end on one process, and at the start of any step under DDP,
    including the first step of an epoch, whose checkpoint Lightning restores one epoch too far). A signal sets a
    flag; at the start of each step the flag is combined over ranks (one all-reduce of one number) and, at the first
    step that is not the first of an epoch, every rank raises ``SIGTERMException`` together. The checkpoint is written
    in ``on_exception`` with every counter at the boundary, so a resume is exact (tested per method, at an epoch
    boundary too). Then, for SIGUSR1/SIGUSR2, the handler that was there before (submitit's or Lightning's SLURM
    one, which requeue the job) is called, so the requeued job resumes from this checkpoint (``ckpt_path=auto``)."""

    def __init__(self, checkpoint_dir: Path, signals: Sequence[str] = ("SIGTERM", "SIGUSR1", "SIGUSR2")):
        self.checkpoint_dir = Path(checkpoint_dir)
        unknown = [name for name in signals if not hasattr(signal, str(name))]
        if unknown:
            raise ValueError(f"callbacks.preemption.signals: unknown signal(s) {unknown}; e.g. SIGTERM, SIGUSR1, SIGUSR2")
        self.signals = [getattr(signal, str(name)) for name in signals]
        self.saved: Path | None = None
        self.step: int | None = None
        self.received = False
        self.signal_name = "SIGTERM"
        self._signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        self.received = True
        if self._signum is None:
            self._signum, self.signal_name = signum, signal.Signals(signum).name

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handler)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx) -> None:
        flag = self.received or bool(getattr(trainer, "received_sigterm", False))
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.tensor([1.0 if flag else 0.0], device=pl_module.device)
            torch.distributed.all_reduce(both, op=torch.distributed.ReduceOp.MAX)
            flag = bool(both.item())
        if flag and batch_idx > 0:  # the first step of an epoch: stop after it, mid-epoch
            raise SIGTERMException()

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        previous = self._previous.get(self._signum)
        self._restore()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        self.step = trainer.global_step
        # The step that was about to start (its batch counted as 'ready') is not in this checkpoint: make the counters
        # say so, as a checkpoint written at the end of the previous step does. Left at ready = completed + 1, Lightning
        # resumes with its validation schedule (and logging step) one batch early: a run validating every 100 steps
        # validated at step 299 instead of 300 after a stop at 273, so its final val/loss was of other weights.
        progress = trainer.fit_loop.epoch_loop.batch_progress
        progress.total.ready = progress.total.completed
        progress.current.ready = progress.current.completed
        path = self.checkpoint_dir / "last.ckpt"
        trainer.save_checkpoint(str(path))
        self.saved = path
        rank_zero_info(f"[preemption] {self.signal_name}: stopped at step {trainer.global_step}, saved {path}")
        if self.signal_name != "SIGTERM" and callable(previous) and previous is not signal.default_int_handler:
            rank_zero_info(f"[preemption] handing {self.signal_name} to the handler that was installed before "
                           f"({getattr(previous, '__qualname__', previous)}): the launcher's requeue")
            previous(self._signum, None)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's piece of a sharded (DTensor) gradient; the tensor itself otherwise."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """No inf or nan in any of ``tensors``, with one host sync: a tensor with inf or nan has a non-finite norm. (So
    does a finite tensor whose norm overflows: False here, and the caller's exact per-tensor check clears it.)"""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    norms = [norm.float().to(tensors[0].device) for group in groups.values() for norm in torch._foreach_norm(group)]
    return bool(torch.stack(norms).isfinite().all())


class NonFiniteGuard(Callback):
    """The check before each optimizer step (``callbacks.nonfinite``): a callback that the modules find among the
    trainer's callbacks and call with the loss and gradients (``TrainableModule.nonfinite_guard``); it has no hooks
    of its own. ``policy``: ``abort`` or ``skip``."""

    def __init__(self, policy: str = "abort", max_consecutive: int = 5):
        if policy not in ("abort", "skip"):
            raise ValueError(f"callbacks.nonfinite.policy={policy!r}; use abort or skip")
        self.policy = policy
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.in_a_row = 0

    @staticmethod
    def find(loss: torch.Tensor | None, params) -> str | None:
        """The first non-finite thing: ``train/loss`` or ``grad of <parameter>``; None if all finite."""
        if loss is not None and not torch.isfinite(loss.detach()).all():
            return f"train/loss={float(loss.detach().float().reshape(-1)[0])}"
        named = [(name, _local(param.grad)) for name, param in params if param.grad is not None]
        if not named or _all_finite([grad for _, grad in named]):
            return None
        for name, grad in named:  # a fault: name the first parameter
            if not torch.isfinite(grad).all():
                return f"the gradient of {name}"
        return None

    def check(self, module: pl.LightningModule, loss: torch.Tensor | None, named_params) -> bool:
        """True if the optimizer step may run. On a fault: skip (False) or save a checkpoint and raise."""
        problem = self.find(loss, named_params)
        trainer = module.trainer
        bad = torch.tensor([1.0 if problem else 0.0], device=module.device)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad)  # every rank skips or aborts together
        if not bad.item():
            self.in_a_row = 0
            return True
        problem = problem or "a non-finite value on another rank"
        step = trainer.global_step
        if self.policy == "skip" and self.in_a_row + 1 < self.max_consecutive:
            self.skipped += 1
            self.in_a_row += 1
            rank_zero_warn(f"[nonfinite] step {step}: {problem}; optimizer step skipped (parameters and optimizer "
                           f"state unchanged; {self.skipped} skipped so far, {self.in_a_row} in a row)")
            module.log("train/nonfinite_skipped", float(self.skipped), on_step=True, on_epoch=False)
            return False
        path = Path(trainer.default_root_dir) / "checkpoints" / f"nonfinite-step{step:06d}.ckpt"
        trainer.save_checkpoint(str(path))  # parameters and optimizer state from before the faulty update
        reason = (f"{self.in_a_row + 1} non-finite steps in a row (callbacks.nonfinite.max_consecutive="
                  f"{self.max_consecutive})" if self.policy == "skip" else "callbacks.nonfinite.policy=abort")
        raise NonFiniteError(
            f"non-finite value at step {step}: {problem} ({reason}). The state before this update is saved in "
            f"{path}. Lower method.lr, check the data of this step, set trainer.gradient_clip_val"
            f"{'' if self.policy == 'skip' else ', or use callbacks.nonfinite.policy=skip'}; resume with "
            f"ckpt_path={path}")


class SampleLedger(Callback):
    """``callbacks=[default,sample_ledger]``: after each training step, append the step, epoch and the dataset indices of
    the batch to ``<run>/samples_seen.rank<r>.jsonl`` (flushed), to check that a resumed run sees every sample of the
    epoch once."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        import json

        index = batch.get("index") if isinstance(batch, dict) else None
        if index is None:
            return
        line = {"step": trainer.global_step, "epoch": trainer.current_epoch, "index": index.tolist()}
        with open(self.run_dir / f"samples_seen.rank{trainer.global_rank}.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")


class StopAtStep(Callback):
    """Stop after a given optimizer step as if the job were preempted: validation runs, ``last.ckpt`` is saved, and
    ``ckpt_path=last`` continues on the same schedule (``trainer.max_steps`` still sets the lr decay)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
