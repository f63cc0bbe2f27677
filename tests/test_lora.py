"""LoRA (``model.lora.r > 0``): the reference is the policy with its adapters off, checkpoints hold only what trains
and resume exactly, and the merged export is a plain transformers model with the same logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from test_hub_models import PPO, REWARD  # noqa: E402
from test_ppo import PPO_FAST  # noqa: E402

from rlhf.models.lora import adapters_disabled, apply_lora, is_lora, trainable_state  # noqa: E402
from rlhf.train import run  # noqa: E402

LORA = ["model.lora.r=4", "model.lora.alpha=8", "model.lora.dropout=0.0"]


def _tiny_policy():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32))


def test_the_reference_is_the_base_model_with_adapters_disabled():
    from rlhf.config.common import LoraConf

    base = _tiny_policy().eval()
    ids = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        expected = base(input_ids=ids).logits.clone()
    model = apply_lora(base, LoraConf(r=4, alpha=8.0, dropout=0.0)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # a trained adapter (B starts at zero)
        adapted = model(input_ids=ids).logits
        with adapters_disabled(model):
            reference = model(input_ids=ids).logits
    assert not torch.allclose(adapted, expected)
    assert torch.equal(reference, expected)
    assert torch.equal(model(input_ids=ids).logits, adapted)  # adapters are back after the block
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    state = trainable_state(model, model.state_dict())
    assert set(state) == trainable | {n for n, _ in model.named_buffers()}


SAMPLED = ["method.evaluation.enabled=true", "method.evaluation.num_samples=2", "method.evaluation.num_prompts=2",
           "method.evaluation.max_new_tokens=4"]


def _hub(gpt2_style_dir) -> list[str]:
    return ["model=pretrained", f"model.name_or_path={gpt2_style_dir}", "logger=csv", "callbacks.progress_bar=null",
            "trainer.enable_model_summary=false", *LORA]


def test_ppo_with_lora_holds_no_reference_copy_and_resumes_exactly(make_cfg, gpt2_style_dir):
    common = [*PPO, *_hub(gpt2_style_dir), "trainer.max_steps=6", "trainer.val_check_interval=3", "test=false",
              "export=false", "method.lr=5e-3"]
    full = run(make_cfg(*common, subdir="full", fast=False))
    first = make_cfg(*common, "callbacks=[default,stop_at_step]", "callbacks.stop_at_step.step=3", subdir="first",
                     fast=False)
    run(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any(k.startswith("ref.") for k in state)  # no reference copy
    assert any("lora_A" in k for k in state) and not any(k.endswith("base_layer.weight") for k in state)
    resumed = run(make_cfg(*common, f"ckpt_path={ckpt}", subdir="resumed", fast=False))
    for key in ("train/reward", "train/kl", "train/pg_loss", "train/vf_loss", "val/reward", "val/kl"):
        assert resumed[key] == pytest.approx(full[key], abs=1e-6), key
    assert full["train/kl"] != 0  # the adapters moved the policy away from its reference


@pytest.mark.parametrize("method", ["ppo", "reward"])
def test_merged_export_loads_in_plain_transformers_with_the_same_logits(method, make_cfg, gpt2_style_dir):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlhf.train import build_data_and_module

    dense = ["method.reward.kind=callable", "method.reward.target=test_ppo.CountLetter"]  # a reward from step 1
    overrides = {"ppo": [*PPO, *dense], "reward": REWARD}[method]
    cfg = make_cfg(*overrides, *_hub(gpt2_style_dir), "method.lr=5e-3", "test=false", fast=False)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    auto = AutoModelForCausalLM if method == "ppo" else AutoModelForSequenceClassification
    exported = auto.from_pretrained(out / "export").eval()
    assert not is_lora(exported) and not (out / "export" / "adapter_config.json").exists()
    _, module = build_data_and_module(cfg, out / "tokenizer-check")  # the base again, adapters from the checkpoint
    module.load_state_dict(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"],
                           strict=False)
    module.model.eval()
    ids = torch.randint(3, len(module.tokenizer), (2, 9))
    with torch.no_grad():
        expected = module.model(input_ids=ids).logits
        got = exported(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    with torch.no_grad(), adapters_disabled(module.model):
        assert not torch.allclose(module.model(input_ids=ids).logits, expected, atol=1e-5)  # the adapters trained


def test_adapter_export_is_the_adapter_alone(make_cfg, gpt2_style_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(*PPO, *_hub(gpt2_style_dir), "test=false", "model.lora.export=adapter", fast=False)
    run(cfg)
    export = Path(cfg.paths.output_dir) / "export"
    assert (export / "adapter_config.json").exists() and not (export / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(str(gpt2_style_dir))
    base.resize_token_embeddings(len(base.get_input_embeddings().weight) + 1)  # the pad row the run added
    assert is_lora(PeftModel.from_pretrained(base, str(export)))


def test_an_adapter_export_needs_a_base_on_disk(make_cfg):
    from rlhf.config import validate_config
    from rlhf.errors import ConfigError

    cfg = make_cfg(*PPO_FAST, *LORA, "model.lora.export=adapter", fast=False)
    with pytest.raises(ConfigError, match="model.lora.export=adapter needs a base model on disk"):
        validate_config(cfg)


@pytest.mark.parametrize("method", ["mlm", "pwp", "sft", "dpo", "kto", "classify"])
def test_mlm_pwp_sft_dpo_kto_and_classify_train_with_lora(method, make_cfg, gpt2_style_dir):
    """The other methods with adapters: only the adapters train, and the merged export loads in plain transformers."""
    from test_classify import CLASSIFY
    from test_dpo import DPO
    from test_hub_models import PWP
    from test_kto import KTO
    from test_sft import SFT
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

    overrides = {"mlm": [*LORA, "trainer.max_steps=3", "method.lr=5e-3"],  # the tiny encoder built from config
                 "pwp": [*PWP, *_hub(gpt2_style_dir), "method.lr=5e-3"],
                 "sft": [*SFT, *_hub(gpt2_style_dir), "data.source.max_articles=60", "method.lr=5e-3"],
                 "dpo": [*DPO, *_hub(gpt2_style_dir), "data.source.max_articles=60", "method.lr=5e-3", *SAMPLED],
                 "kto": [*KTO, *_hub(gpt2_style_dir), "data.source.max_articles=60", "method.lr=5e-3", *SAMPLED],
                 "classify": [*CLASSIFY, *LORA, "trainer.max_steps=3", "trainer.limit_test_batches=2"],
                 }[method]
    cfg = make_cfg(*overrides, fast=method == "mlm")
    metrics = run(cfg)
    assert metrics["trainer/global_step"] >= 2
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    trained_b = [v for k, v in state.items() if "lora_B" in k]
    assert trained_b and any(v.abs().sum() > 0 for v in trained_b)  # the adapters moved
    if method in ("dpo", "kto"):  # the reference is the policy with its adapters off: the samples' log-ratios see
        # the adapters' move (a Monte Carlo estimate over 2 samples: its sign is noise, but it is exactly 0 if the
        # policy's pass ran with the adapters off too)
        assert abs(metrics["test/prompted/kl_to_reference"]) > 1e-4
    auto = {"mlm": AutoModelForMaskedLM, "classify": AutoModelForSequenceClassification}.get(method,
                                                                                           AutoModelForCausalLM)
    exported = auto.from_pretrained(Path(cfg.paths.output_dir) / "export")
    assert not is_lora(exported)
    if method == "classify":  # the new head trains in full next to the adapters, and the export keeps the labels
        head = [k for k in state if "modules_to_save" in k and "classifier" in k]
        assert head and exported.config.id2label[0] == "business"
