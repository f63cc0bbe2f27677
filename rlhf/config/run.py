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


@dataclass
class StrategyConf:
    name: str = spec("auto", choices=["auto", "ddp", "ddp_spawn", "ddp_fork", "fsdp", "deepspeed"],
                     help="Lightning strategy. fsdp and deepspeed need GPUs.")
    process_group_backend: str | None = spec(None, choices=[None, "nccl", "gloo"],
                                                help="Collective backend (default: nccl on GPU, gloo on CPU).")
    find_unused_parameters: bool = spec(False, help="DDP: tolerate parameters without gradients (slower).")
    timeout_minutes: int = spec(30, ge=1, help="Collective timeout.")
    sharding_strategy: str = spec("FULL_SHARD", choices=["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"],
                                  help="FSDP sharding.")
    stage: int = spec(2, ge=1, le=3, help="DeepSpeed ZeRO stage.")
    offload_optimizer: bool = spec(False, help="DeepSpeed: keep optimizer state on the CPU.")
    offload_parameters: bool = spec(False, help="DeepSpeed stage 3: keep parameters on the CPU.")


@dataclass
class WandbConf:
    project: str = spec("rlhf", help="W&B project.")
    entity: str | None = spec(None, help="W&B entity (team or user).")
    group: str | None = spec(None, help="Run group (default: the method; sweeps: the sweep dir).")
    job_type: str | None = spec(None, help="Job type (default: the method).")
    mode: str = spec("offline", choices=["offline", "online", "disabled", "dryrun"],
                     help="offline (alias dryrun) needs no key or network; sync later with "
                          "`wandb sync <run dir>/wandb/...`. Defaults to $WANDB_MODE.")
    log_model: bool = spec(False, help="Upload checkpoints as W&B artifacts (online only).")


@dataclass
class LoggerConf:
    wandb: WandbConf | None = spec(None, help="Weights & Biases (default).")
    csv: bool = spec(False, help="Also write metrics.csv in the run dir.")
    extra: list[Any] = spec(factory=list, help="More Lightning loggers, each a _target_ node, e.g. 'logger.extra=[{"
                                                "_target_: lightning.pytorch.loggers.MLFlowLogger}]' (with mlflow "
                                                "installed).")


@dataclass
class CheckpointConf:
    every_n_train_steps: int | None = spec(None, ge=1, help="Also save step<N>.ckpt and last.ckpt every N optimizer "
                                                            "steps from the first, whatever is monitored (bounds "
                                                            "what a kill loses). null: at validations only.")
    keep_steps: int = spec(2, ge=1, help="How many step<N>.ckpt files to keep (the newest).")
    monitor: str | None = spec(None, help="Metric that picks the best checkpoint (default: optimized_metric).")
    mode: str = spec("min", choices=["min", "max"], help="Whether a lower or higher monitored value is better.")
    save_top_k: int = spec(1, ge=-1, help="How many best checkpoints to keep (0: only last.ckpt).")


@dataclass
class NonFiniteConf:
    policy: str = spec("abort", choices=["abort", "skip"],
                       help="A NaN/Inf loss or gradient before an optimizer step: abort (save the state before the "
                            "fault and stop, naming step and metric) or skip (no update, counted).")
    max_consecutive: int = spec(5, ge=1, help="policy=skip: abort after this many non-finite steps in a row.")


@dataclass
class CallbacksConf:
    checkpoint: CheckpointConf = spec(factory=CheckpointConf, help="Checkpointing.")
    nonfinite: NonFiniteConf = spec(factory=NonFiniteConf, help="The non-finite loss/gradient guard.")
    progress_bar: str = spec("rich", choices=["rich", "tqdm", "none"], help="Progress bar style.")
    lr_monitor: bool = spec(True, help="Log the learning rate.")
    throughput: bool = spec(True, help="Log tokens/s and samples/s.")
    early_stopping_patience: int | None = spec(None, ge=1, help="Stop after N validations without improvement.")
    sample_ledger: bool = spec(False, help="Record the dataset indices of every training batch in "
                                           "<run>/samples_seen.rank<r>.jsonl (checks exact resume).")
    stop_at_step: int | None = spec(None, ge=1, help="Stop after this step as if preempted (validates, saves "
                                                     "last.ckpt); resume with ckpt_path=last.")
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
                                   "use with callbacks.early_stopping_patience).")
    tags: list[str] = spec(factory=list, help="W&B tags.")
    experiment_name: str | None = spec(None, help="Set by experiment overlays; used for the W&B group.")
