"""Every export carries a model card and a lineage record; a run that starts from an export records it as an input;
with W&B on, the export is logged as a model artifact."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from test_ppo import PPO_FAST
from test_reward import REWARD_FAST

from rlhf.train import run
from rlhf.utils.model_card import card_text


def test_the_card_says_what_ran_from_the_config_and_metrics():
    config = {"model": {"source": "pretrained", "name_or_path": "gpt2", "lora": {"r": 8}},
              "method": {"_target_": "x", "lr": 1e-4, "kl_coef": 0.05}, "data": {"source": {"kind": "file",
              "path": "prefs.jsonl", "format": "hh"}}, "seed": 3, "experiment_name": "ppo_tiny", "tags": ["tiny"]}
    record = {"run_name": "ppo", "run_dir": "/runs/ppo", "wandb_run_id": "abc123"}
    card = card_text(config, {"test/gold": 0.8123, "val/kl": 2.5, "train/x": 1.0, "trainer/global_step": 40.0},
                     "ppo", record)
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == "gpt2" and front["tags"] == ["rlhf", "ppo", "tiny"]
    assert front["model-index"][0]["results"][0]["metrics"] == [{"name": "test/gold", "type": "test/gold",
                                                                 "value": 0.8123}]
    assert "`method=ppo`, `experiment=ppo_tiny`" in card and "(LoRA r=8, merged)" in card
    assert "`file` `prefs.jsonl` (format `hh`)" in card and "steps: 40" in card and "W&B run `abc123`" in card
    assert "| `test/gold` | 0.8123 |" in card and "| `val/kl` | 2.5 |" in card and "train/x" not in card
    assert "kl_coef: 0.05" in card and "_target_" not in card and "AutoModelForCausalLM.from_pretrained" in card


def test_exports_carry_a_card_and_lineage_and_are_logged_as_wandb_artifacts(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_GROUP", "my-pipeline")
    rm_cfg = make_cfg(*REWARD_FAST, "trainer.max_steps=2", "logger=[wandb,csv]", "logger.wandb.mode=offline",
                      subdir="rm", fast=False)
    rm_metrics = run(rm_cfg)
    rm_dir = Path(rm_cfg.paths.output_dir)
    export = rm_dir / "export"
    card = (export / "README.md").read_text()
    assert "a reward model" in card and f"| `test/accuracy` | {rm_metrics['test/accuracy']:.4g} |" in card
    record = json.loads((export / "rlhf_run.json").read_text())
    assert record["method"] == "reward" and record["run_dir"] == str(rm_dir) and record["inputs"] == []
    assert record["wandb_artifact"] == f"reward-{rm_dir.name}" and record["wandb_run_id"]
    import wandb

    wandb.finish()
    wandb.teardown()  # (rlhf-train's process exit does this) the service writes the run file from its own process,
    # and only its shutdown guarantees the file is flushed: finish() alone left it at its header once under load
    run_file = next((rm_dir / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    assert record["wandb_artifact"].encode() in run_file and b"my-pipeline" in run_file  # artifact and group

    ppo_cfg = make_cfg(*PPO_FAST, "method.reward.kind=reward_model", f"method.reward.path={export}",
                       "trainer.max_steps=2", "test=false", subdir="ppo", fast=False)
    run(ppo_cfg)
    ppo_dir = Path(ppo_cfg.paths.output_dir)
    inputs = json.loads((ppo_dir / "run_metadata.json").read_text())["inputs"]
    assert [(i["method"], i["wandb_artifact"], i["path"]) for i in inputs] == [("reward", record["wandb_artifact"],
                                                                                str(export))]
    lineage = json.loads((ppo_dir / "export" / "rlhf_run.json").read_text())
    assert lineage["method"] == "ppo" and lineage["inputs"][0]["run_dir"] == str(rm_dir)
    assert lineage["wandb_artifact"] is None  # this run logged to CSV only


def test_push_to_hub_is_refused_offline_before_training_and_a_failed_push_says_how_to_retry(make_cfg, monkeypatch,
                                                                                              tmp_path):
    import pytest

    from rlhf.config import validate_config
    from rlhf.errors import ConfigError, PushError
    from rlhf.utils.stages import push_export

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"push_to_hub=me/tiny needs the network, but HF_HUB_OFFLINE=1 is set"):
        validate_config(make_cfg("push_to_hub=me/tiny"))
    with pytest.raises(ConfigError, match=r"push_to_hub=me/tiny needs export=true"):
        validate_config(make_cfg("push_to_hub=me/tiny", "export=false"))
    export = tmp_path / "export"
    export.mkdir()
    with pytest.raises(PushError, match=rf"could not be uploaded .* It is complete at {export}; upload it later "
                                        rf"with: hf upload me/tiny {export}"):
        push_export(export, "me/tiny")  # offline here: the hub cannot be reached
