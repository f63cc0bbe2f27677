"""The stages of one run around ``trainer.fit``, each a small function so ``rlhf.train`` reads top to bottom:
provenance first, the optional "before" evaluation, fit (SIGTERM becomes a resumable stop), the best weights, and
the closing summary."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from rlhf.callbacks import Preemption
from rlhf.config import resolved_config
from rlhf.errors import ConfigError, Preempted, PushError
from rlhf.utils.model_card import read_run_record, write_export_records
from rlhf.utils.run import WANDB_ID_FILE, run_metadata, scalar_metrics, write_json

log = logging.getLogger("rlhf")
START_METRICS = "start_metrics.json"


def record_provenance(cfg: DictConfig, trainer: pl.Trainer, output_dir: Path) -> None:
    """Resolved config, git commit, versions and the exports this run starts from (``run.inputs``: each one's run
    and W&B artifact): in the run dir and in every logger (rank 0 only). An online W&B run also declares those
    artifacts as its inputs, so the lineage (reward model -> policy) shows in W&B; offline, W&B cannot (its
    ``use_artifact`` needs the server), and ``run.inputs`` in the config holds it."""
    if not trainer.is_global_zero:
        return
    resolved = resolved_config(cfg)
    meta = {**run_metadata(), "inputs": export_inputs(resolved)}
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    write_json(output_dir / "run_metadata.json", meta)
    for logger in trainer.loggers:
        logger.log_hyperparams({**resolved, "run": meta})
        experiment = getattr(logger, "experiment", None)
        run_id = getattr(experiment, "id", None)
        if isinstance(run_id, str):
            (output_dir / WANDB_ID_FILE).write_text(run_id)
        if _wandb_online(experiment):
            for record in meta["inputs"]:
                if record.get("wandb_artifact"):
                    experiment.use_artifact(f"{record['wandb_artifact']}:latest")


def export_inputs(resolved: dict[str, Any]) -> list[dict[str, Any]]:
    """The lineage records (``rlhf_run.json``) of every export directory the config points to (a policy's or reward
    model's ``name_or_path``, a reward model ``path``, a critic's init: any string value that is one)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and "/" in node and node not in found:
            record = read_run_record(node)
            if record is not None:
                found[node] = {**record, "path": node}

    walk(resolved)
    return list(found.values())


def push_export(export_dir: Path, repo: str) -> None:
    """Upload the export (weights, tokenizer, model card) to the Hub repo ``repo`` (created if missing)."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(export_dir), commit_message="rlhf export")
    except Exception as err:
        reason = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise PushError(f"push_to_hub={repo}: the export could not be uploaded ({reason}). It is complete at "
                        f"{export_dir}; upload it later with: hf upload {repo} {export_dir}") from err
    log.info(f"pushed {export_dir} to https://huggingface.co/{repo}")


def _wandb_online(experiment: Any) -> bool:
    settings = getattr(experiment, "settings", None)
    return experiment is not None and settings is not None and getattr(settings, "mode", None) == "online"


def log_export(trainer: pl.Trainer, export_dir: Path, cfg: DictConfig, metrics: dict[str, Any], method: str,
               output_dir: Path) -> None:
    """The export's model card and lineage record, and the export as a W&B model artifact (rank 0)."""
    wandb_run = next((logger.experiment for logger in trainer.loggers if type(logger).__name__ == "WandbLogger"), None)
    run_id = getattr(wandb_run, "id", None)
    artifact = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{method}-{output_dir.name}") if isinstance(run_id, str) else None
    resolved = resolved_config(cfg)
    record = {"run_name": output_dir.name, "run_dir": str(output_dir), "method": method,
              "wandb_run_id": run_id if isinstance(run_id, str) else None, "wandb_artifact": artifact,
              "inputs": [{k: v for k, v in r.items() if k != "inputs"} for r in export_inputs(resolved)]}
    write_export_records(export_dir, resolved, metrics, method, record)
    if artifact is not None:
        import wandb

        model_artifact = wandb.Artifact(artifact, type="model", metadata={
            "method": method, **{k: v for k, v in metrics.items() if k.startswith("test/")}})
        model_artifact.add_dir(str(export_dir))
        wandb_run.log_artifact(model_artifact)


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
        raise Preempted(f"preempted ({preemption.signal_name}) at step {preemption.step}: saved {preemption.saved}; resume with "
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


def finish(cfg: DictConfig, trainer: pl.Trainer, module: pl.LightningModule, metrics: dict[str, Any],
           output_dir: Path, method: str) -> None:
    """The data counts to the loggers and ``metrics.json`` (rank 0), the Hugging Face export (every rank takes part:
    a sharded model's weights are gathered first; rank 0 writes) with its model card and W&B artifact, and the
    summary."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if k.startswith(("data/", "model/"))},
                               step=trainer.global_step)
        write_json(output_dir / "metrics.json", metrics)
    export_dir = module.export(output_dir / "export") if cfg.export else None
    if trainer.is_global_zero:
        if export_dir is not None:
            log_export(trainer, export_dir, cfg, metrics, method, output_dir)
            if cfg.push_to_hub:
                push_export(export_dir, cfg.push_to_hub)
        print_summary(output_dir, trainer, export_dir, metrics, cfg.optimized_metric)


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
