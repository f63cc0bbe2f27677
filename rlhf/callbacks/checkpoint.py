"""Checkpoint files that survive faults.

- :class:`AtomicCheckpointIO` (a checkpoint-IO plugin) writes ``<name>.tmp-<pid>`` in the checkpoint's directory,
  fsyncs it and renames it into place: a kill or an error during the write leaves the previous file intact.
- :class:`RunCheckpoint` (``callbacks.checkpoint``) is Lightning's ``ModelCheckpoint`` (best-k by the monitored
  metric, ``last.ckpt``) with ``last.ckpt`` refreshed at every validation even when no best-k file is kept, and,
  with ``every_n_train_steps``, ``step<N>.ckpt`` + ``last.ckpt`` every N optimizer steps from the first, whatever
  metric is monitored, so it bounds what a kill loses. Lightning's own ``every_n_train_steps`` would do the cadence,
  but only once the monitored metric exists, without a hard-linked ``last.ckpt`` that is always the newest step file,
  and without keep-the-newest-N pruning that never deletes the file being resumed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint


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
    """``ModelCheckpoint`` writing ``best-step<N>.ckpt`` (the best ``save_top_k`` by ``monitor``) and ``last.ckpt``.

    ``last.ckpt`` is refreshed at every validation, even when no top-k checkpoint is kept (``save_top_k=0``): Lightning
    2.6 would otherwise write it only when training ends, and a preempted run would have nothing to resume from.
    ``every_n_train_steps`` (ours, not passed to Lightning, see the module docstring): every N optimizer steps,
    ``step<N>.ckpt`` (the newest ``keep_steps`` are kept) and ``last.ckpt`` (a hard link to it where the filesystem
    allows, else a copy), written at the end of the step (a restart point Lightning's loops support) on every rank
    together (the strategy writes on rank 0). Being a ``Checkpoint``, Lightning runs it after the other callbacks, so
    a step's checkpoint follows everything they record at that step (e.g. the sample ledger's line)."""

    def __init__(self, dirpath: str, monitor: str | None, mode: str, save_top_k: int, every_n_train_steps: int | None,
                 keep_steps: int):
        super().__init__(dirpath=dirpath, filename="best-step{step:06d}", auto_insert_metric_name=False,
                         monitor=monitor if save_top_k else None, mode=mode, save_top_k=save_top_k, save_last=True)
        self.step_every = every_n_train_steps
        self.keep_steps = keep_steps

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if not self.step_every or step == 0 or step % self.step_every or trainer.sanity_checking:
            return
        dirpath = Path(self.dirpath)
        path = dirpath / f"step{step:06d}.ckpt"
        trainer.save_checkpoint(str(path))
        if not trainer.is_global_zero:
            return
        last = dirpath / "last.ckpt"
        tmp = dirpath / f".last.ckpt.link-{os.getpid()}"
        _remove(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # no hard links here, or a sharded checkpoint (a directory): copy it
            (shutil.copytree if path.is_dir() else shutil.copyfile)(path, tmp)
        if last.is_dir():
            _remove(last)
        os.replace(tmp, last)  # atomic for files: last.ckpt is the old or the new checkpoint, never half of one
        for old in sorted(dirpath.glob("step*.ckpt"))[: -self.keep_steps]:
            _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
