"""``rlhf-train``: compose the config, build data, module, loggers, callbacks and trainer, fit, test, export.

    rlhf-train                                   # masked-LM pretraining of a tiny BERT on BBC News (CPU, offline)
    rlhf-train experiment=mlm_minilm trainer=gpu
    rlhf-train -m method.lr=1e-4,3e-4 seed=1,2,3  # a sweep: one run (and one W&B run) per job
    rlhf-train ckpt_path=last                    # resume the newest run of this method

Returns the value of ``optimized_metric`` so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra  # noqa: E402
import lightning.pytorch as pl  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import get_class  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402
from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rlhf.config import (  # noqa: E402
    CONFIG_DIR,
    key_hints,
    register_configs,
    register_resolvers,
    resolved_config,
    validate_config,
)
from rlhf.data.tokenizer import save_tokenizer  # noqa: E402
from rlhf.errors import USER_ERRORS, ConfigError, JobFailed, Preempted  # noqa: E402
from rlhf.utils.builders import (  # noqa: E402
    build_callbacks,
    build_loggers,
    build_strategy,
    teardown_distributed,
    trainer_kwargs,
)
from rlhf.utils.reliability import (  # noqa: E402
    PREEMPTED_EXIT_CODE,
    AtomicCheckpointIO,
    Preemption,
)
from rlhf.utils.run import (  # noqa: E402
    WANDB_ID_FILE,
    RunDirLock,
    check_checkpoint,
    check_writable,
    previous_wandb_id,
    resolve_ckpt_path,
    run_metadata,
    scalar_metrics,
    write_json,
)
from rlhf.utils.sweep import finish_sweep  # noqa: E402

log = logging.getLogger("rlhf")
# Lightning warns that a mid-epoch resume may be unreliable unless the dataloader implements state_dict; our
# DataModules restore the position in the epoch themselves (TextDataModule.state_dict + ResumableSampler, tested by
# the per-sample ledger in tests/test_reliability.py), so the warning would only mislead.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")

register_configs()
register_resolvers()


def _hydra_choice(group: str) -> str | None:
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get(group)
    return None


def _method_name(cfg: DictConfig) -> str:
    return _hydra_choice("method") or str(cfg.method._target_).rsplit(".", 1)[-1]


def _load_best_weights(trainer: pl.Trainer) -> dict[str, float]:
    """final_weights=best: put the best checkpoint's weights into the module before test and export."""
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


START_METRICS = "start_metrics.json"


def _evaluate_at_start(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
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


def run(cfg: DictConfig) -> dict[str, Any]:
    """One training run. Returns its final metrics (also written to ``<run dir>/metrics.json``)."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    check_writable(output_dir, "hydra.run.dir")
    with RunDirLock(output_dir):  # one live run per run directory
        return _run(cfg, output_dir)


def _run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    pl.seed_everything(cfg.seed, workers=True)
    method = _method_name(cfg)
    ckpt = resolve_ckpt_path(cfg.ckpt_path, output_dir, Path(cfg.paths.log_dir), _hydra_choice("method"))
    if ckpt is not None:
        log.info(f"Resuming from {ckpt}")

    datamodule, module = build_data_and_module(cfg, output_dir / "tokenizer")
    if ckpt is not None:
        check_checkpoint(ckpt, module)

    strategy = build_strategy(cfg.strategy, cfg.trainer.accelerator)
    group = cfg.experiment_name or method
    if HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
        group = f"{group}/{Path(HydraConfig.get().sweep.dir).name}"
    loggers = build_loggers(cfg.logger, output_dir, method, list(cfg.tags), group, previous_wandb_id(ckpt))
    callbacks = build_callbacks(cfg.callbacks, output_dir, cfg.optimized_metric, cfg.trainer.enable_checkpointing,
                                has_logger=bool(loggers))
    kwargs = trainer_kwargs(cfg.trainer)
    kwargs["default_root_dir"] = kwargs.get("default_root_dir") or str(output_dir)
    if cfg.callbacks.progress_bar == "none":
        kwargs["enable_progress_bar"] = False
    if not module.automatic_optimization:  # it steps its optimizers and clips itself (PPO: method.max_grad_norm)
        kwargs.pop("gradient_clip_val", None)
        kwargs.pop("gradient_clip_algorithm", None)
    preemption = Preemption(output_dir / "checkpoints")
    callbacks.append(preemption)
    plugins = [] if str(cfg.strategy.name).startswith(("deepspeed", "fsdp")) else [AtomicCheckpointIO()]
    trainer = pl.Trainer(**kwargs, strategy=strategy, callbacks=callbacks, logger=loggers or False, plugins=plugins)

    _record_provenance(cfg, trainer, output_dir)
    metrics: dict[str, Any] = {}
    if cfg.train:
        if cfg.evaluate_at_start:
            metrics.update(_evaluate_at_start(trainer, module, datamodule, output_dir, resuming=ckpt is not None))
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
        except SIGTERMException as stop:
            raise Preempted(f"preempted (SIGTERM) at step {preemption.step}: saved {preemption.saved}; resume with "
                            f"ckpt_path={output_dir}") from stop
        metrics.update({k: v for k, v in scalar_metrics(trainer.callback_metrics).items()
                        if not k.startswith("test/")})  # (test/* here would be evaluate_at_start's)
        if cfg.final_weights == "best":
            metrics.update(_load_best_weights(trainer))
    if cfg.test:
        results = trainer.test(module, datamodule=datamodule)
        metrics.update(scalar_metrics(results[0] if results else {}))
        metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics.update(datamodule.data_metrics())
    metrics["trainer/global_step"] = float(trainer.global_step)

    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if k.startswith("data/")}, step=trainer.global_step)
        write_json(output_dir / "metrics.json", metrics)
        export_dir = module.export(output_dir / "export") if cfg.export else None
        _print_summary(output_dir, trainer, export_dir, metrics, cfg.optimized_metric)
    teardown_distributed()
    return metrics


def build_data_and_module(cfg: DictConfig, tokenizer_dir: Path) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The DataModule (which owns the tokenizer), then the LightningModule, each the ``_target_`` of its group and
    given its group's settings; the module loads the saved tokenizer, so ``load_from_checkpoint`` needs nothing but
    the checkpoint and that directory."""
    datamodule = get_class(cfg.data._target_)(cfg=cfg.data, tokenizer=cfg.model.tokenizer, seed=cfg.seed)
    save_tokenizer(datamodule.tokenizer, tokenizer_dir)
    module = get_class(cfg.method._target_)(cfg=cfg.method, model=cfg.model, tokenizer_dir=str(tokenizer_dir))
    return datamodule, module


def _record_provenance(cfg: DictConfig, trainer: pl.Trainer, output_dir: Path) -> None:
    """Resolved config, git commit and versions: in the run dir and in every logger (rank 0 only)."""
    if not trainer.is_global_zero:
        return
    resolved = resolved_config(cfg)
    meta = run_metadata()
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    write_json(output_dir / "run_metadata.json", meta)
    for logger in trainer.loggers:
        logger.log_hyperparams({**resolved, "run": meta})
        experiment = getattr(logger, "experiment", None)
        run_id = getattr(experiment, "id", None)
        if isinstance(run_id, str):
            (output_dir / WANDB_ID_FILE).write_text(run_id)


@rank_zero_only
def _print_summary(output_dir: Path, trainer: pl.Trainer, export_dir: Path | None, metrics: dict,
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


def run_and_close(cfg: DictConfig) -> dict[str, Any]:
    """:func:`run`, then always finish the W&B run (and, on error, drop the process group), so the next job of a
    sweep starts clean."""
    try:
        return run(cfg)
    except Preempted:
        teardown_distributed(barrier=False)
        _finish_wandb(exit_code=PREEMPTED_EXIT_CODE, preempting=True)  # the resume continues this W&B run
        raise
    except BaseException:
        teardown_distributed(barrier=False)
        _finish_wandb(exit_code=1)
        raise
    finally:
        _finish_wandb(exit_code=0)


def _finish_wandb(exit_code: int, preempting: bool = False) -> None:
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        if preempting:
            wandb.mark_preempting()
        wandb.finish(exit_code=exit_code)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        metrics = run_and_close(cfg)
    except (*USER_ERRORS, Preempted) as err:  # a message for the user, not a traceback from deep inside a library
        preempted = isinstance(err, Preempted)
        print(f"\n{'Stopped' if preempted else 'Error'}: {err}", file=sys.stderr, flush=True)
        if str(HydraConfig.get().mode) == "RunMode.MULTIRUN":
            raise JobFailed(str(err)) from err  # Hydra records the job as failed and launches the next one
        raise SystemExit(PREEMPTED_EXIT_CODE if preempted else 1) from err
    value = metrics.get(cfg.optimized_metric) if cfg.optimized_metric else None
    return float(value) if isinstance(value, (int, float)) else None


def main() -> None:
    if not CONFIG_DIR.is_dir():
        raise SystemExit(f"config tree not found at {CONFIG_DIR}: the rlhf package is incomplete; reinstall it (pip install rlhf, or pip install -e . from a clone)")
    if {"--help", "-h"} & set(sys.argv[1:]):  # our page (groups, the selected method's keys) instead of Hydra's
        from rlhf.cli_help import help_page
        print(help_page(sys.argv[1:]))
        return
    try:
        _hydra_main()
    except SystemExit as stop:
        if stop.code:
            for hint in key_hints(sys.argv[1:]):
                print(f"Hint: {hint}", file=sys.stderr)
        raise
    finally:
        finish_sweep()  # the table of a multirun, also when a job failed (Hydra then skips on_multirun_end)


if __name__ == "__main__":
    main()
