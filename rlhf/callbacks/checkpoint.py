"""Checkpoint files that survive faults.

- :class:`AtomicCheckpointIO` (a checkpoint-IO plugin) writes ``<name>.tmp-<pid>`` in the checkpoint's directory,
  fsyncs it and renames it into place: a kill or an error during the write leaves the previous file intact.
- :class:`RunCheckpoint` is Lightning's ``ModelCheckpoint`` (best-k by the monitored metric, ``last.ckpt``) with
  ``last.ckpt`` refreshed at every validation even when no best-k file is kept.
- :class:`StepCheckpoint` (``callbacks.checkpoint.every_n_train_steps``) writes ``step<N>.ckpt`` and ``last.ckpt``
  every N optimizer steps from the first, whatever metric is monitored, so it bounds what a kill loses. Lightning's
  ``ModelCheckpoint(every_n_train_steps=...)`` would do the cadence, but not a hard-linked ``last.ckpt`` that is
  always the newest step file, nor keep-the-newest-N pruning that never deletes the file being resumed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed at every validation, even when no top-k checkpoint is
    kept (``save_top_k=0``): Lightning 2.6 would otherwise write ``last.ckpt`` only when training ends, and a
    preempted run would have nothing to resume from."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class StepCheckpoint(Callback):
    """Every ``every_n`` optimizer steps from the first: ``checkpoints/step<N>.ckpt`` (the newest ``keep`` are kept)
    and ``last.ckpt`` (a hard link to it where the filesystem allows, else a copy). Unlike Lightning's
    ``ModelCheckpoint(every_n_train_steps=...)`` it does not wait for the monitored metric to exist, so a run that
    validates every 1,000 steps still has a resume point every N steps. Written at the end of the step (a restart
    point Lightning's loops support), on every rank together (the strategy writes on rank 0)."""

    def __init__(self, dirpath: Path, every_n: int, keep: int = 2):
        self.dirpath = Path(dirpath)
        self.every_n = int(every_n)
        self.keep = int(keep)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n or trainer.sanity_checking:
            return
        path = self.dirpath / f"step{step:06d}.ckpt"
        trainer.save_checkpoint(str(path))
        if not trainer.is_global_zero:
            return
        last = self.dirpath / "last.ckpt"
        tmp = self.dirpath / f".last.ckpt.link-{os.getpid()}"
        _remove(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # no hard links here, or a sharded checkpoint (a directory): copy it
            (shutil.copytree if path.is_dir() else shutil.copyfile)(path, tmp)
        if last.is_dir():
            _remove(last)
        os.replace(tmp, last)  # atomic for files: last.ckpt is the old or the new checkpoint, never half of one
        for old in sorted(self.dirpath.glob("step*.ckpt"))[: -self.keep]:
            _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
