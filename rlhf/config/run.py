"""Schemas of the run-level groups: trainer, strategy, logger, callbacks, paths, and the top-level keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from rlhf.config.fields import spec


@dataclass
class TrainerConf:
    """The Lightning Trainer arguments the framework exposes (add more here, typed, rather than via ``+``)."""

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = spec("auto", choices=["auto", "cpu", "gpu", "cuda", "mps", "tpu"], help="Device type.")
    devices: Any = spec("auto", help="Number of devices per node, a list of ids, or auto.")
    num_nodes: int = spec(1, ge=1, help="Machines (multi-node runs; see README).")
    precision: str = spec("32-true", choices=["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true",
                                              "64-true"], help="Numerical precision.")
    max_steps: int = spec(-1, ge=-1, help="Optimizer steps to train; -1 = use max_epochs.")
    max_epochs: int | None = spec(None, ge=-1, help="Epochs to train when max_steps=-1.")
    accumulate_grad_batches: int = spec(1, ge=1, help="Micro-batches per optimizer step.")
    gradient_clip_val: float | None = spec(1.0, ge=0.0, help="Clip the gradient norm to this value (null = off).")
    gradient_clip_algorithm: str = spec("norm", choices=["norm", "value"], help="How gradients are clipped.")
    val_check_interval: Any = spec(None, help="Validate every N training batches (int) or fraction of an epoch.")
    check_val_every_n_epoch: int | None = spec(1, ge=1, help="Validate every N epochs (null with an int interval).")
    limit_train_batches: Any = spec(None, help="Use only this many (int) or this share (float) of train batches.")
    limit_val_batches: Any = spec(None, help="Same for validation.")
    limit_test_batches: Any = spec(None, help="Same for test.")
    num_sanity_val_steps: int = spec(0, ge=-1, help="Validation batches run before training.")
    log_every_n_steps: int = spec(10, ge=1, help="How often training metrics are logged.")
    fast_dev_run: Any = spec(False, help="Run 1 (or N) batch of train/val/test to smoke-test the pipeline.")
    overfit_batches: Any = spec(0.0, help="Train and validate on this many batches (debugging).")
    deterministic: Any = spec(False, help="Force deterministic algorithms (true, false or 'warn').")
    benchmark: bool | None = spec(None, help="cudnn.benchmark.")
    detect_anomaly: bool = spec(False, help="Autograd anomaly detection (slow).")
    profiler: str | None = spec(None, choices=[None, "simple", "advanced", "pytorch"], help="Profiler.")
    enable_progress_bar: bool = spec(True, help="Show the progress bar.")
    enable_model_summary: bool = spec(True, help="Print the model summary.")
    enable_checkpointing: bool = spec(True, help="Save checkpoints (needed for resume).")
    default_root_dir: str | None = spec(None, help="Where Lightning writes (defaults to the run dir).")
    use_distributed_sampler: bool = spec(False, help="Our resumable samplers shard by rank themselves; keep false.")


# ---- strategy: one schema per Lightning strategy class, instantiated from its _target_ -----------------------------
@dataclass
class TimeoutConf:
    _target_: str = "datetime.timedelta"
    minutes: float = spec(30.0, gt=0.0, help="Collective timeout in minutes.")


@dataclass
class AutoStrategyConf:
    """``strategy=auto``: no ``_target_``; Lightning picks a single device, or DDP when ``trainer.devices > 1``."""


@dataclass
class DDPStrategyConf:
    _target_: str = "lightning.pytorch.strategies.DDPStrategy"
    start_method: str = spec("popen", choices=["popen", "spawn", "fork", "forkserver"],
                             help="popen re-launches the command per rank; spawn works in notebooks and pytest.")
    process_group_backend: str | None = spec(None, choices=[None, "nccl", "gloo"],
                                             help="Collective backend (default: nccl on GPU, gloo on CPU).")
    find_unused_parameters: bool = spec(False, help="Tolerate parameters without gradients (slower).")
    timeout: TimeoutConf = spec(factory=TimeoutConf, help="Collective timeout (strategy.timeout.minutes).")


@dataclass
class FSDPStrategyConf:
    _target_: str = "lightning.pytorch.strategies.FSDPStrategy"
    sharding_strategy: str = spec("FULL_SHARD", choices=["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"],
                                  help="What is sharded across ranks.")
    process_group_backend: str | None = spec(None, choices=[None, "nccl", "gloo"], help="Collective backend.")
    timeout: TimeoutConf = spec(factory=TimeoutConf, help="Collective timeout (strategy.timeout.minutes).")


@dataclass
class FSDP2StrategyConf:
    """``strategy=fsdp2``: FSDP2 (``fully_shard`` per transformer block) through Lightning's ModelParallelStrategy;
    GPUs, or CPU processes over gloo."""
    _target_: str = "rlhf.models.sharding.FSDP2Strategy"
    process_group_backend: str | None = spec(None, choices=[None, "nccl", "gloo"],
                                             help="Collective backend (default: nccl on GPU, gloo on CPU).")
    timeout: TimeoutConf = spec(factory=TimeoutConf, help="Collective timeout (strategy.timeout.minutes).")


@dataclass
class DeepSpeedStrategyConf:
    _target_: str = "lightning.pytorch.strategies.DeepSpeedStrategy"
    stage: int = spec(2, ge=1, le=3, help="ZeRO stage.")
    offload_optimizer: bool = spec(False, help="Keep optimizer state on the CPU.")
    offload_parameters: bool = spec(False, help="Stage 3: keep parameters on the CPU.")
    timeout: TimeoutConf = spec(factory=TimeoutConf, help="Collective timeout (strategy.timeout.minutes).")


STRATEGY_KINDS = {"DDPStrategy": "ddp", "FSDPStrategy": "fsdp", "FSDP2Strategy": "fsdp2",
                  "DeepSpeedStrategy": "deepspeed"}


def strategy_kind(strategy: Any) -> str:
    """``auto``, ``ddp``, ``fsdp``, ``fsdp2``, ``deepspeed`` or ``other``: what the ``strategy`` node builds (by its
    ``_target_``'s class name), for the checks that depend on it."""
    target = strategy.get("_target_") if strategy is not None else None
    if not target:
        return "auto"
    return STRATEGY_KINDS.get(str(target).rsplit(".", 1)[-1], "other")


def builds_in_context(strategy: Any) -> bool:
    """FSDP or DeepSpeed ZeRO-3: the strategy builds the networks itself, in its context (``configure_model``)."""
    kind = strategy_kind(strategy)
    return kind == "fsdp" or (kind == "deepspeed" and int(strategy.stage) == 3)


# ---- loggers: every logger a _target_ node; runtime fields (save_dir, run name, id) are filled by the builder ----
@dataclass
class WandbConf:
    _target_: str = "lightning.pytorch.loggers.WandbLogger"
    project: str = spec("rlhf", help="W&B project.")
    entity: str | None = spec(None, help="W&B entity (team or user).")
    group: str | None = spec(None, help="Run group (default: the experiment or method; sweeps: + the sweep dir).")
    job_type: str | None = spec(None, help="Job type (default: the method).")
    mode: str = spec("offline", choices=["offline", "online", "disabled"],
                     help="offline needs no key or network; sync later with `wandb sync <run dir>/wandb/...`. "
                          "Defaults to $WANDB_MODE.")
    log_model: bool = spec(False, help="Upload checkpoints as W&B artifacts (online only).")


@dataclass
class CsvConf:
    _target_: str = "lightning.pytorch.loggers.CSVLogger"
    save_dir: str = spec("${paths.output_dir}", help="Writes <save_dir>/<name>/version_0/metrics.csv.")
    name: str = spec("csv", help="Subdirectory of save_dir.")


@dataclass
class HistoryConf:
    _target_: str = "rlhf.utils.history.HistoryLogger"
    save_dir: str = spec("${paths.output_dir}", help="Writes <save_dir>/metrics_history.jsonl.")


@dataclass
class LoggerConf:
    """Options: ``logger=wandb`` (default), ``csv``, ``wandb_csv``, ``none``, or a list (``logger=[wandb,csv]``).
    ``history`` is on whatever the option: every run's metrics in one JSON-lines file (what the notebooks read)."""

    wandb: WandbConf | None = spec(None, help="Weights & Biases (logger=wandb).")
    csv: CsvConf | None = spec(None, help="metrics.csv in the run dir (logger=csv).")
    history: HistoryConf | None = spec(factory=HistoryConf, help="Every logged metric in <run>/metrics_history.jsonl "
                                                                 "(null: off).")
    extra: list[Any] = spec(factory=list, help="More Lightning loggers, each a _target_ node, e.g. 'logger.extra=[{"
                                                "_target_: lightning.pytorch.loggers.MLFlowLogger}]' (with mlflow "
                                                "installed).")


# ---- callbacks: one _target_ node per callback; null turns one off -----------------------------------------------
@dataclass
class CheckpointConf:
    _target_: str = "rlhf.callbacks.RunCheckpoint"
    dirpath: str = spec("${paths.output_dir}/checkpoints", help="Where checkpoints are written.")
    monitor: str | None = spec("${optimized_metric}", help="Metric that picks the best checkpoint.")
    mode: str = spec("min", choices=["min", "max"], help="Whether a lower or higher monitored value is better.")
    save_top_k: int = spec(1, ge=-1, help="How many best checkpoints to keep (0: only last.ckpt).")
    every_n_train_steps: int | None = spec(None, ge=1, help="Also save step<N>.ckpt and last.ckpt every N optimizer "
                                                            "steps from the first, whatever is monitored (bounds "
                                                            "what a kill loses). null: at validations only.")
    keep_steps: int = spec(2, ge=1, help="How many step<N>.ckpt files to keep (the newest).")


@dataclass
class ProgressBarConf:
    _target_: str = spec("lightning.pytorch.callbacks.RichProgressBar",
                         help="Or lightning.pytorch.callbacks.TQDMProgressBar; callbacks.progress_bar=null: none.")
    leave: bool = spec(True, help="Keep each epoch's bar on screen.")


@dataclass
class LrMonitorConf:
    _target_: str = "lightning.pytorch.callbacks.LearningRateMonitor"
    logging_interval: str = spec("step", choices=["step", "epoch"], help="When the learning rate is logged.")


@dataclass
class ThroughputConf:
    _target_: str = "rlhf.callbacks.TokenThroughput"


@dataclass
class NonFiniteConf:
    _target_: str = "rlhf.callbacks.NonFiniteGuard"
    policy: str = spec("abort", choices=["abort", "skip"],
                       help="A NaN/Inf loss or gradient before an optimizer step: abort (save the state before the "
                            "fault and stop, naming step and metric) or skip (no update, counted).")
    max_consecutive: int = spec(5, ge=1, help="policy=skip: abort after this many non-finite steps in a row.")


@dataclass
class PreemptionConf:
    _target_: str = "rlhf.callbacks.Preemption"
    checkpoint_dir: str = spec("${paths.output_dir}/checkpoints", help="Where the stop's last.ckpt is written.")
    signals: list[str] = spec(factory=lambda: ["SIGTERM", "SIGUSR1", "SIGUSR2"],
                              help="Signals that stop the run at the next step boundary with a checkpoint: SIGTERM "
                                   "(preemption, kill), SIGUSR1 (SLURM's --signal warning), SIGUSR2 (submitit's); "
                                   "after a SIGUSR the launcher's own handler then requeues the job.")


@dataclass
class EarlyStoppingConf:
    _target_: str = "lightning.pytorch.callbacks.EarlyStopping"
    monitor: str = spec("${optimized_metric}", help="The metric watched.")
    mode: str = spec("min", choices=["min", "max"], help="Whether a lower or higher value is better.")
    patience: int = spec(3, ge=1, help="Validations without improvement before stopping.")
    min_delta: float = spec(0.0, ge=0.0, help="The smallest change that counts as an improvement.")


@dataclass
class SampleLedgerConf:
    _target_: str = "rlhf.callbacks.SampleLedger"
    run_dir: str = spec("${paths.output_dir}", help="Writes <run_dir>/samples_seen.rank<r>.jsonl.")


@dataclass
class StopAtStepConf:
    _target_: str = "rlhf.callbacks.StopAtStep"
    step: int = spec(MISSING, ge=1, help="Stop after this optimizer step as if preempted (validates, saves "
                                         "last.ckpt); resume with ckpt_path=last.")


@dataclass
class CallbacksConf:
    """Every callback is a ``_target_`` node (its file in ``rlhf/conf/callbacks/``). ``callbacks.<name>=null`` turns
    one off; the optional ones are added with a list, e.g. ``callbacks=[default,early_stopping]``."""

    checkpoint: CheckpointConf | None = spec(factory=CheckpointConf, help="Best-k, last.ckpt and step checkpoints.")
    progress_bar: ProgressBarConf | None = spec(factory=ProgressBarConf, help="The progress bar (null: none).")
    lr_monitor: LrMonitorConf | None = spec(factory=LrMonitorConf, help="Logs the learning rate (needs a logger).")
    throughput: ThroughputConf | None = spec(factory=ThroughputConf, help="Logs tokens/s and samples/s.")
    nonfinite: NonFiniteConf | None = spec(factory=NonFiniteConf, help="The non-finite loss/gradient guard.")
    preemption: PreemptionConf | None = spec(factory=PreemptionConf, help="SIGTERM: stop at a step boundary, "
                                                                          "save last.ckpt.")
    early_stopping: EarlyStoppingConf | None = spec(None, help="Stop when the metric stops improving: "
                                                               "callbacks=[default,early_stopping].")
    sample_ledger: SampleLedgerConf | None = spec(None, help="Record the dataset indices of every training batch "
                                                             "(checks exact resume): callbacks=[default,sample_ledger].")
    stop_at_step: StopAtStepConf | None = spec(None, help="Stop as if preempted: callbacks=[default,stop_at_step] "
                                                          "callbacks.stop_at_step.step=N.")
    extra: list[Any] = spec(factory=list, help="More callbacks, each a _target_ node (yours or Lightning's), e.g. "
                                                "'callbacks.extra=[{_target_: lightning.pytorch.callbacks."
                                                "DeviceStatsMonitor}]'.")


@dataclass
class PathsConf:
    root_dir: str = spec(MISSING, help="Project root (the current directory by default).")
    log_dir: str = spec(MISSING, help="Where run directories are created.")
    output_dir: str = spec(MISSING, help="This run's directory (Hydra's runtime output dir).")
    cache_dir: str = spec(MISSING, help="Tokenizer and scorer caches shared by runs.")


@dataclass
class RunConf:
    """Top-level keys. The groups carry their own schemas through their defaults lists."""

    method: Any = MISSING
    model: Any = MISSING
    data: Any = MISSING
    trainer: Any = MISSING
    strategy: Any = MISSING
    logger: Any = MISSING
    callbacks: Any = MISSING
    paths: Any = MISSING
    seed: int = spec(42, ge=0, help="Seeds init, data order, masking and sampling.")
    train: bool = spec(True, help="Run trainer.fit.")
    test: bool = spec(True, help="Run trainer.test on the held-out split after training.")
    export: bool = spec(True, help="Write the Hugging Face export (save_pretrained + tokenizer) to <run>/export.")
    push_to_hub: str | None = spec(None, help="After the export, upload it to this Hugging Face Hub repo (e.g. "
                                              "me/ppo-tiny; needs the network and a token from `hf auth login`). "
                                              "Refused before training when HF_HUB_OFFLINE=1.")
    ckpt_path: str | None = spec(None, help="Resume from: 'auto' (this run dir's last.ckpt if any, else start fresh: "
                                            "requeued jobs), 'last' (newest last.ckpt of this method), a .ckpt "
                                            "file or a run directory.")
    evaluate_at_start: bool = spec(False, help="Score the test split with the initial weights before training: "
                                               "start/test/<metric> in metrics.json (the 'before' of before -> "
                                               "after), logged at step 0.")
    optimized_metric: str | None = spec("val/loss", help="Metric returned to sweepers and used for the best ckpt.")
    final_weights: str = spec("last", choices=["last", "best"],
                              help="Weights that are tested and exported: 'last' (the end of training) or 'best' (the "
                                   "checkpoint with the best callbacks.checkpoint.monitor, default optimized_metric; "
                                   "use with callbacks=[default,early_stopping]).")
    tags: list[str] = spec(factory=list, help="W&B tags.")
    experiment_name: str | None = spec(None, help="Set by experiment overlays; used for the W&B group.")
