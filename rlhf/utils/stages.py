"""The stages of one run around ``trainer.fit``, each a small function so ``rlhf.train`` reads top to bottom:
provenance first, the optional "before" evaluation, fit (SIGTERM becomes a resumable stop), the best weights, and
the closing summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from rlhf.callbacks import Preemption
from rlhf.config import resolved_config
from rlhf.errors import ConfigError, Preempted
from rlhf.utils.run import WANDB_ID_FILE, run_metadata, scalar_metrics, write_json

log = logging.getLogger("rlhf")
START_METRICS = "start_metrics.json"


def record_provenance(cfg: DictConfig, trainer: pl.Trainer, output_dir: Path) -> None:
    """Resolved config, git commit and versions: in the run dir and in every logger (rank 0 only)."""
    if not trainer.is_global_zero:
        return
    resolved = resolved_config(cfg)
    meta = run_metadata()
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    write_json(output_dir / "run_metadata.json", meta)
    for logger in trainer.loggers:
        logger.log_hyperparams({**resolved, "run": meta})
        run_id = getattr(getattr(logger, "experiment", None), "id", None)
        if isinstance(run_id, str):
            (output_dir / WANDB_ID_FILE).write_text(run_id)


def evaluate_at_start(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
                      output_dir: Path, resuming: bool) -> dict[str, float]:
    """``evaluate_at_start=true``: the test split scored with the weights training starts from, recorded as
    ``start/test/<metric>`` (the 'before' of a before -> after), also logged at step 0. Kept in
    ``<run>/start_metrics.json`` so a resumed run reports them without evaluating its resumed weights."""
    path = output_dir / START_METRICS
    if resuming or path.exists():
        return json.loads(path.read_text()) if path.exists() else {}
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    start = {f"start/{k}": v for k, v in scalar_metrics(results[0] if results else {}).items()}
    if trainer.is_global_zero:
        write_json(path, start)
    return start


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule, ckpt: Path | None,
        output_dir: Path) -> dict[str, float]:
    """``trainer.fit``; a SIGTERM (after the checkpoint :class:`Preemption` saved) becomes :class:`Preempted`.
    Returns the training and validation metrics (not test/*: those would be evaluate_at_start's)."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except SIGTERMException as stop:
        preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))
        raise Preempted(f"preempted (SIGTERM) at step {preemption.step}: saved {preemption.saved}; resume with "
                        f"ckpt_path={output_dir}") from stop
    return {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if not k.startswith("test/")}


def load_best_weights(trainer: pl.Trainer) -> dict[str, float]:
    """final_weights=best: put the best checkpoint's weights into the module before test and export. (Lightning's
    ``trainer.test(ckpt_path="best")`` would test them but leave the module's weights as they were, and the export
    must be of the same weights that were tested.)"""
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    if not best:
        raise ConfigError("final_weights=best: no checkpoint was ranked (was the monitored metric "
                          f"'{getattr(callback, 'monitor', None)}' logged? validation must run at least once)")
    checkpoint = trainer.strategy.load_checkpoint(best)
    trainer.strategy.load_model_state_dict(checkpoint, strict=True)
    score = callback.best_model_score
    log.info(f"final_weights=best: loaded {best} (step {checkpoint['global_step']}, {callback.monitor}={score})")
    return {"trainer/best_step": float(checkpoint["global_step"]),
            f"best/{callback.monitor}": float(score) if score is not None else float("nan")}


def test(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule) -> dict[str, float]:
    results = trainer.test(module, datamodule=datamodule)
    return {**scalar_metrics(results[0] if results else {}), **scalar_metrics(trainer.callback_metrics)}


def finish(trainer: pl.Trainer, module: pl.LightningModule, metrics: dict[str, Any], output_dir: Path,
           export: bool, optimized_metric: str | None) -> None:
    """The data counts to the loggers and ``metrics.json`` (rank 0), the Hugging Face export (every rank takes part:
    a sharded model's weights are gathered first; rank 0 writes), and the summary."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if k.startswith(("data/", "model/"))},
                               step=trainer.global_step)
        write_json(output_dir / "metrics.json", metrics)
    export_dir = module.export(output_dir / "export") if export else None
    if trainer.is_global_zero:
        print_summary(output_dir, trainer, export_dir, metrics, optimized_metric)


@rank_zero_only
def print_summary(output_dir: Path, trainer: pl.Trainer, export_dir: Path | None, metrics: dict,
                  optimized_metric: str | None) -> None:
    ckpt_cb = trainer.checkpoint_callback
    last = Path(ckpt_cb.dirpath) / "last.ckpt" if ckpt_cb is not None and ckpt_cb.dirpath else None
    wandb_dirs = sorted((output_dir / "wandb").glob("*run-*")) if (output_dir / "wandb").exists() else []
    lines = [
        "",
        "Run finished.",
        f"  run dir             : {output_dir}",
        f"  checkpoint          : {last if last and last.exists() else '(none)'}",
        f"  HF export           : {export_dir or '(export=false)'}",
        f"  metrics             : {output_dir / 'metrics.json'}",
        f"  W&B run             : {wandb_dirs[-1] if wandb_dirs else '(W&B off)'}",
    ]
    if wandb_dirs and "offline" in wandb_dirs[-1].name:
        lines.append(f"                        (offline; upload with: wandb sync {wandb_dirs[-1]})")
    if optimized_metric and optimized_metric in metrics:
        lines.append(f"  {optimized_metric:<20}: {metrics[optimized_metric]:.4f}")
    for key in ("val/perplexity", "test/loss", "test/perplexity", "test/masked_accuracy"):
        if key in metrics and isinstance(metrics[key], float):
            lines.append(f"  {key:<20}: {metrics[key]:.4f}")
    print("\n".join(lines), flush=True)
