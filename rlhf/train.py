"""``rlhf-train``: compose the config, build data, module and trainer, fit, test, export.

    rlhf-train                                   # masked-LM pretraining of a tiny BERT on BBC News (CPU, offline)
    rlhf-train experiment=mlm_minilm trainer=gpu
    rlhf-train -m method.lr=1e-4,3e-4 seed=1,2,3  # a sweep: one run (and one W&B run) per job
    rlhf-train ckpt_path=last                    # resume the newest run of this method

Returns the value of ``optimized_metric`` so Hydra sweepers can optimise it.
"""

from __future__ import annotations

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
from omegaconf import DictConfig  # noqa: E402

from rlhf.callbacks import PREEMPTED_EXIT_CODE  # noqa: E402
from rlhf.config import CONFIG_DIR, key_hints, register_configs, register_resolvers, validate_config  # noqa: E402
from rlhf.config.run import builds_in_context, strategy_kind  # noqa: E402
from rlhf.data.tokenizer import save_tokenizer  # noqa: E402
from rlhf.errors import USER_ERRORS, JobFailed, Preempted  # noqa: E402
from rlhf.models.sharding import built_on_meta_unless_rank_zero  # noqa: E402
from rlhf.utils import stages  # noqa: E402
from rlhf.utils.builders import build_trainer, teardown_distributed  # noqa: E402
from rlhf.utils.run import RunDirLock, check_checkpoint, check_writable, previous_wandb_id, resolve_ckpt_path  # noqa: E402
from rlhf.utils.sweep import finish_sweep  # noqa: E402

log = logging.getLogger("rlhf")
# Lightning warns that a mid-epoch resume may be unreliable unless the dataloader implements state_dict; our
# DataModules restore the position in the epoch themselves (TextDataModule.state_dict + ResumableSampler, tested by
# the per-sample ledger in tests/test_reliability.py), so the warning would only mislead.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")

register_configs()
register_resolvers()


def run(cfg: DictConfig) -> dict[str, Any]:
    """One training run. Returns its final metrics (also written to ``<run dir>/metrics.json``).

    The run owns its W&B run: it is finished when the run returns or fails (marked preempting when the run was
    preempted, so the resume continues it), and a failed run drops its process group, so the next run in the same
    process (a sweep's next job, a notebook's next cell) starts clean: Lightning's W&B logger would otherwise log
    into the W&B run left open."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    check_writable(output_dir, "hydra.run.dir")
    try:
        with RunDirLock(output_dir):  # one live run per run directory
            return _run(cfg, output_dir)
    except Preempted:
        teardown_distributed(barrier=False)
        _finish_wandb(exit_code=PREEMPTED_EXIT_CODE, preempting=True)
        raise
    except BaseException:
        teardown_distributed(barrier=False)
        _finish_wandb(exit_code=1)
        raise
    finally:
        _finish_wandb(exit_code=0)


def _run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    pl.seed_everything(cfg.seed, workers=True)
    ckpt = resolve_ckpt_path(cfg.ckpt_path, output_dir, Path(cfg.paths.log_dir), _hydra_choice("method"))
    if ckpt is not None:
        log.info(f"Resuming from {ckpt}")
    datamodule, module = build_data_and_module(cfg, output_dir / "tokenizer")
    if ckpt is not None:
        check_checkpoint(ckpt, module)
    method = _hydra_choice("method") or type(module).__name__
    trainer = build_trainer(cfg, output_dir, method, not module.automatic_optimization, previous_wandb_id(ckpt))
    stages.record_provenance(cfg, trainer, output_dir)

    metrics: dict[str, Any] = {}
    if cfg.train:
        if cfg.evaluate_at_start:
            metrics.update(stages.evaluate_at_start(trainer, module, datamodule, output_dir, resuming=bool(ckpt)))
        metrics.update(stages.fit(trainer, module, datamodule, ckpt, output_dir))
        if cfg.final_weights == "best":
            metrics.update(stages.load_best_weights(trainer))
    if cfg.test:
        metrics.update(stages.test(trainer, module, datamodule))
    metrics.update(datamodule.data_metrics())
    metrics["trainer/global_step"] = float(trainer.global_step)
    stages.finish(cfg, trainer, module, metrics, output_dir, method)
    teardown_distributed()
    return metrics


def build_data_and_module(cfg: DictConfig, tokenizer_dir: Path) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The DataModule (which owns the tokenizer), then the LightningModule, each the ``_target_`` of its group and
    given its group's settings; the module loads the saved tokenizer, so ``load_from_checkpoint`` needs nothing but
    the checkpoint and that directory."""
    datamodule = get_class(cfg.data._target_)(cfg=cfg.data, tokenizer=cfg.model.tokenizer, seed=cfg.seed)
    save_tokenizer(datamodule.tokenizer, tokenizer_dir)
    module = get_class(cfg.method._target_)(cfg=cfg.method, model=cfg.model, tokenizer_dir=str(tokenizer_dir))
    if not builds_in_context(cfg.strategy):  # FSDP1 / ZeRO-3 build the networks in their context (configure_model)
        with built_on_meta_unless_rank_zero(strategy_kind(cfg.strategy)):  # fsdp2: only rank 0 holds whole weights
            module.configure_model()
    return datamodule, module


def _hydra_choice(group: str) -> str | None:
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


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
        metrics = run(cfg)
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
