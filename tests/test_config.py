"""The config tree: every shipped option composes and validates; bad values fail before any model is built."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from rlhf.config import key_hints, validate_config
from rlhf.errors import ConfigError
from rlhf.train import CONFIG_DIR, build_data_and_module

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
GROUP_OPTIONS = [(group.name, p.stem) for group in sorted(CONFIG_DIR.iterdir()) if group.is_dir()
                 and group.name not in ("experiment", "hydra", "hparams_search", "recipe")  # (recipe: rlhf-pipeline's)
                 for p in sorted(group.glob("*.yaml"))]


def test_default_config_validates(make_cfg):
    cfg = make_cfg(fast=False)
    validate_config(cfg)
    assert cfg.method.lr == 1e-3 and cfg.data.mask_prob == 0.15 and cfg.trainer.max_steps == 500


def _tiny_causal_lm_export(directory: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf.data.tokenizer import train_tokenizer

    tok = train_tokenizer(["the markets rose today", "the team won the cup again"] * 20, "bpe", 300)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_validates_and_instantiates(make_cfg, experiment, tmp_path):
    overrides = []
    if experiment == "ppo_sentiment":  # starts from an LM export: a tiny GPT-2 saved with save_pretrained
        overrides.append(f"model.name_or_path={_tiny_causal_lm_export(tmp_path / 'lm')}")
    cfg = make_cfg(f"experiment={experiment}", *overrides, fast=False)
    validate_config(cfg)
    assert cfg.experiment_name == experiment
    if cfg.model.source == "config":  # the tokenizer of a pretrained model is loaded, not trained on the corpus
        if "max_documents" in cfg.data.source:
            cfg.data.source.max_documents = 300
        else:
            cfg.data.source.max_articles = 60
    datamodule, module = build_data_and_module(cfg, tmp_path / "tok")
    assert datamodule.tokenizer is module.tokenizer or len(datamodule.tokenizer) == len(module.tokenizer)
    assert sum(p.numel() for p in module.parameters()) > 0


@pytest.mark.parametrize("group,option", [g for g in GROUP_OPTIONS if g[0] != "model" or g[1] != "pretrained"])
def test_every_group_option_composes(make_cfg, group, option):
    overrides = [f"{group}={option}"]
    if option in ("text_file_mlm", "feedback_file"):
        overrides.append("data.source.path=corpus.jsonl")
    if (group, option) in (("method", "reward"),) or option.startswith("feedback"):  # a method needs its data
        overrides = ["method=reward", "data=feedback_simulated", *overrides]
    if (group, option) in (("method", "ppo"), ("data", "prompts")):
        overrides = ["method=ppo", "data=prompts", "model=tiny_gpt2", *overrides]
    if (group, option) in (("method", "pwp"), ("data", "bbc_news_scored")):
        overrides = ["method=pwp", "data=bbc_news_scored", "model=tiny_gpt2", *overrides]
    if (group, option) in (("method", "sft"), ("data", "demonstrations")):
        overrides = ["method=sft", "data=demonstrations", "model=tiny_gpt2", *overrides]
    if (group, option) in (("method", "dpo"), ("data", "preference_pairs")):
        overrides = ["method=dpo", "data=preference_pairs", "model=tiny_gpt2", *overrides]
    if (group, option) in (("method", "classify"), ("data", "bbc_topics")):
        overrides = ["method=classify", "data=bbc_topics", *overrides]
    if (group, option) in (("method", "kto"), ("data", "unpaired_feedback")):
        overrides = ["method=kto", "data=unpaired_feedback", "model=tiny_gpt2", *overrides]
    if group == "strategy" and option in ("fsdp", "deepspeed", "deepspeed_stage_3"):
        cfg = make_cfg(*overrides, "trainer.accelerator=cpu", fast=False)
        with pytest.raises(ConfigError, match="needs GPUs"):  # refused before anything is built
            validate_config(cfg)
        validate_config(make_cfg(*overrides, "trainer=gpu", fast=False))  # and valid on GPUs
        return
    validate_config(make_cfg(*overrides, fast=False))


def test_pretrained_model_requires_a_name(make_cfg):
    cfg = make_cfg("model=pretrained", fast=False)
    with pytest.raises(ConfigError, match=r"model.name_or_path"):
        validate_config(cfg)


def test_typo_fails_at_composition_naming_the_key(make_cfg):
    with pytest.raises(ConfigCompositionException, match=r"trainer\.max_step"):
        make_cfg("trainer.max_step=5")


def test_added_unknown_key_fails_with_suggestion(make_cfg):
    cfg = make_cfg("+trainer.max_step=5")
    with pytest.raises(ConfigError, match=r"trainer\.max_step is not a known key of trainer\. Did you mean: max_steps"):
        validate_config(cfg)


def test_key_hints_know_the_keys_of_the_selected_option_only():
    # data.source differs between the MLM and the reward data options: the hint follows the option the command
    # selects (directly, through experiment=, or the default), not the union of every option's keys
    assert key_hints(["experiment=reward_tiny", "data.source.pairs_per_article=4"]) == []
    assert key_hints(["data=feedback_file", "data.source.pairs_per_article=4"]) == []  # follows feedback_simulated
    [hint] = key_hints(["data.source.pairs_per_article=4"])  # the default data (MLM corpus) has no such key
    assert "Keys of data.source:" in hint and "max_documents" in hint and "temperature" not in hint
    [hint] = key_hints(["data.source.max_documentz=3"])
    assert hint.startswith("'data.source.max_documentz' is not a known key. Did you mean: max_documents?")
    # method.* lists the keys of the selected method, not PPO's and PWP's keys for an MLM run
    [hint] = key_hints(["method.kl_coef=0.1"])
    assert "Keys of method: _target_, betas, eps, lr," in hint and "kl_coef" not in hint.split("Keys of")[1]
    [hint] = key_hints(["experiment=ppo_tiny", "method.kl_coeff=0.1"])
    assert "Did you mean: kl_coef" in hint and "unlikelihood_alpha" not in hint


def test_the_pipeline_validates_every_stage_before_the_first_runs(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "rlhf.pipeline", f"out_dir={tmp_path / 'out'}",
                          "ppo:method.kl_coeff=0.1"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 1
    assert "a stage's config is invalid (nothing was run)" in out.stderr
    assert "stage ppo: Could not override 'method.kl_coeff'" in out.stderr and "Did you mean: kl_coef" in out.stderr
    assert "To append" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out" / "mlm").exists()  # no stage started


def test_wrong_type_fails_at_composition_naming_the_key(make_cfg):
    with pytest.raises(ConfigCompositionException, match=r"method\.lr=abc") as info:
        make_cfg("method.lr=abc")
    assert "could not be converted to float" in str(info.value.__cause__).lower()


@pytest.mark.parametrize("override,message", [
    ("data.mask_prob=1.5", r"data\.mask_prob=1\.5 must be > 0\.0 and <= 1\.0"),
    ("method.lr=-1", r"method\.lr=-1\.0 must be > 0\.0"),
    ("method.scheduler=exponential", r"method\.scheduler='exponential' must be one of: constant, linear, cosine"),
    ("data.split.val_fraction=0.6", None),
    ("data.mask_replace_prob=0.95", r"data\.mask_replace_prob \+ random_replace_prob = 1\.05 must be <= 1"),
    ("model.num_heads=3", r"model\.num_heads=3 must divide model\.hidden_size=64"),
    ("data.source.kind=file", r"data\.source\.path is required when source\.kind=file"),
    ("trainer.precision=8-bit", r"trainer\.precision='8-bit' must be one of"),
    ("method.betas=[0.9,1.5]", r"method\.betas=\[0\.9, 1\.5\] must be two numbers in \[0, 1\)"),
])
def test_out_of_range_values_fail_before_anything_is_built(make_cfg, override, message):
    cfg = make_cfg(override)
    if message is None:
        validate_config(cfg)  # 0.6 + 0.1 < 1 is allowed
        return
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_cli_reports_a_bad_value_and_exits_nonzero(tmp_path):
    """What a user sees: the bad key and what is allowed, exit code 1, nothing trained."""
    out = subprocess.run([sys.executable, "-m", "rlhf.train", "data.mask_prob=1.5", f"hydra.run.dir={tmp_path}/run",
                          "logger=none"], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 1
    assert "data.mask_prob=1.5 must be > 0.0 and <= 1.0" in out.stderr + out.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_reports_a_typo(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rlhf.train", "trainer.max_step=5", f"hydra.run.dir={tmp_path}/run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "trainer.max_step" in out.stderr and "max_steps" in out.stderr


def test_a_method_with_the_wrong_dataset_is_refused(make_cfg):
    cfg = make_cfg("method=reward", fast=False)  # the default data is the MLM corpus
    with pytest.raises(ConfigError, match=r"does not feed method=reward"):
        validate_config(cfg)


def test_optimizer_and_scheduler_come_from_partial_target_nodes(make_cfg, tmp_path):
    """``method.optimizer`` (a _partial_ node) replaces AdamW, keeping lr and the no-decay groups;
    ``method.lr_scheduler`` (a _partial_ node) replaces the warm-up/decay schedule."""
    import torch

    cfg = make_cfg("method.optimizer={_target_: torch.optim.SGD, _partial_: true, momentum: 0.5}", "method.lr=0.02",
                   "method.lr_scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 3, "
                   "gamma: 0.5}")
    validate_config(cfg)
    _, module = build_data_and_module(cfg, tmp_path / "tok")
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD) and isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, 0.02]
    assert optimizer.param_groups[0]["momentum"] == 0.5 and optimizer.param_groups[1]["weight_decay"] == 0.0
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_callbacks_loggers_and_strategy_come_from_target_nodes(make_cfg):
    """Every callback, logger and strategy of a run is its config node's _target_: tuned by its keys, turned off with
    null, optional ones added with a list (callbacks=[default,...]), any other one added by its _target_."""
    from datetime import timedelta
    from pathlib import Path

    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateFinder,
        LearningRateMonitor,
        ProgressBar,
        TQDMProgressBar,
    )
    from lightning.pytorch.loggers import CSVLogger, WandbLogger
    from lightning.pytorch.strategies import DDPStrategy

    from rlhf.callbacks import NonFiniteGuard, Preemption, RunCheckpoint, SampleLedger
    from rlhf.utils.builders import build_strategy, build_trainer
    from rlhf.utils.history import HistoryLogger

    cfg = make_cfg("callbacks=[default,early_stopping,sample_ledger]", "callbacks.early_stopping.patience=2",
                   "callbacks.progress_bar._target_=lightning.pytorch.callbacks.TQDMProgressBar",
                   "callbacks.lr_monitor=null", "callbacks.checkpoint.every_n_train_steps=5",
                   "callbacks.nonfinite.policy=skip",
                   "callbacks.extra=[{_target_: lightning.pytorch.callbacks.LearningRateFinder, num_training_steps: 7}]",
                   "logger=[wandb,csv]", "logger.wandb.mode=disabled", fast=False)
    validate_config(cfg)
    trainer = build_trainer(cfg, Path(cfg.paths.output_dir), "mlm", False, None)
    kinds = {type(c) for c in trainer.callbacks}
    assert {TQDMProgressBar, EarlyStopping, SampleLedger, RunCheckpoint, Preemption, NonFiniteGuard,
            LearningRateFinder} <= kinds and LearningRateMonitor not in kinds
    early = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
    assert (early.monitor, early.patience) == ("val/loss", 2)
    assert next(c for c in trainer.callbacks if isinstance(c, RunCheckpoint)).step_every == 5
    assert next(c for c in trainer.callbacks if isinstance(c, NonFiniteGuard)).policy == "skip"
    assert [type(x) for x in trainer.loggers] == [WandbLogger, CSVLogger, HistoryLogger]

    quiet = make_cfg("callbacks.progress_bar=null", "logger=none")  # the history file is still written
    trainer = build_trainer(quiet, Path(quiet.paths.output_dir), "mlm", False, None)
    assert not any(isinstance(c, ProgressBar) for c in trainer.callbacks) and trainer.progress_bar_callback is None
    assert [type(x) for x in trainer.loggers] == [HistoryLogger]
    silent = make_cfg("logger=none", "logger.history=null")
    trainer = build_trainer(silent, Path(silent.paths.output_dir), "mlm", False, None)
    assert trainer.loggers == [] and not any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks)

    strategy = build_strategy(make_cfg("strategy=ddp_spawn", "strategy.timeout.minutes=2").strategy)
    assert isinstance(strategy, DDPStrategy) and strategy._start_method == "spawn"
    assert strategy._timeout == timedelta(minutes=2)
    assert build_strategy(make_cfg().strategy) == "auto"

    bad = make_cfg("callbacks.extra=[{_target_: no.such.Callback}]")
    with pytest.raises(ConfigError, match=r"callbacks.extra\[0\] cannot be built"):
        build_trainer(bad, Path(bad.paths.output_dir), "mlm", False, None)
