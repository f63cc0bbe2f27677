"""DPO (``method=dpo``): every loss against hand-computed values, sequence log-probs that ignore prompt and padding,
chosen and rejected sharing their prompt ids, the precomputed reference equal to the live one (and not recomputed
on resume), and the real command learning a toy preference from a user-style file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlhf.objectives import IGNORE_INDEX
from rlhf.objectives.dpo import dpo_losses, implicit_rewards, preference_margin, sequence_logps
from rlhf.train import run


def softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def test_each_loss_by_hand():
    h, beta, eps = torch.tensor([1.0, -2.0]), 0.5, 0.1
    # -log σ(βh) = softplus(-βh)
    expect_sigmoid = [softplus(-0.5), softplus(1.0)]
    assert dpo_losses(h, beta, "sigmoid").tolist() == pytest.approx(expect_sigmoid)
    expect_cdpo = [(1 - eps) * softplus(-0.5) + eps * softplus(0.5), (1 - eps) * softplus(1.0) + eps * softplus(-1.0)]
    assert dpo_losses(h, beta, "sigmoid", eps).tolist() == pytest.approx(expect_cdpo)
    expect_robust = [((1 - eps) * softplus(-0.5) - eps * softplus(0.5)) / (1 - 2 * eps),
                     ((1 - eps) * softplus(1.0) - eps * softplus(-1.0)) / (1 - 2 * eps)]
    assert dpo_losses(h, beta, "robust", eps).tolist() == pytest.approx(expect_robust)
    assert dpo_losses(h, beta, "ipo").tolist() == pytest.approx([(1.0 - 1.0) ** 2, (-2.0 - 1.0) ** 2])  # 1/(2β) = 1
    assert dpo_losses(h, beta, "hinge").tolist() == pytest.approx([0.5, 2.0])
    # robust is unbiased: its expectation under flip rate ε equals the clean sigmoid loss
    flipped = dpo_losses(-h, beta, "robust", eps)
    assert ((1 - eps) * dpo_losses(h, beta, "robust", eps) + eps * flipped).tolist() == pytest.approx(expect_sigmoid)


def test_margin_rewards_and_sequence_logps_by_hand():
    h = preference_margin(torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5]))
    assert h.item() == pytest.approx((-3 + 5) - (-4 + 4.5))
    assert preference_margin(torch.tensor([-3.0]), torch.tensor([-5.0]), None, None).item() == 2.0
    assert implicit_rewards(torch.tensor([-3.0]), torch.tensor([-4.0]), 0.1).item() == pytest.approx(0.1)
    logits = torch.zeros(2, 4, 3)
    logits[0, 1, 2] = math.log(2.0)  # p(token 2 | position 1) = 2/4
    x = IGNORE_INDEX
    labels = torch.tensor([[x, x, 2, 0], [x, 1, x, x]])  # row 0: prompt of 2, response (2, 0); row 1: one token
    logps, counts = sequence_logps(logits, labels)
    assert counts.tolist() == [2, 1]
    assert logps.tolist() == pytest.approx([math.log(0.5) + math.log(1 / 3), math.log(1 / 3)])
    # padding on the right changes nothing
    padded_logits = torch.cat([logits, torch.randn(2, 3, 3)], 1)
    padded_labels = torch.cat([labels, torch.full((2, 3), x)], 1)
    assert sequence_logps(padded_logits, padded_labels)[0].tolist() == pytest.approx(logps.tolist())


# ---- the real command ----------------------------------------------------------------------------------------------
DPO = ["experiment=dpo_tiny", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
       "model.intermediate_size=64", "model.tokenizer.vocab_size=400", "data.loader.batch_size=8",
       "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
       "logger=csv", "data.split.val_fraction=0.2", "data.split.test_fraction=0.2", "method.warmup_steps=1",
       "method.evaluation.enabled=false"]
GOOD = ["lovely", "great", "happy", "wonderful"]
BAD = ["awful", "terrible", "sad", "horrible"]


def _prefs(path: Path, n: int = 240, long_prompt: bool = False) -> Path:
    rows = []
    for i in range(n):
        prompt = f"review number {i} of item {i % 17} :" + (" and some context" * 30 if long_prompt else "")
        rows.append({"prompt": prompt, "chosen": f" it was {GOOD[i % 4]} .", "rejected": f" it was {BAD[i % 4]} ."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chosen_and_rejected_share_their_prompt_ids_and_labels_cover_only_responses(make_cfg, tmp_path):
    from rlhf.train import build_data_and_module

    cfg = make_cfg(*DPO, "data.source.kind=file", f"data.source.path={_prefs(tmp_path / 'p.jsonl', 60, True)}",
                   "data.max_length=40", fast=False)
    datamodule, module = build_data_and_module(cfg, tmp_path / "tok")
    dataset = datamodule.build_dataset("train")
    assert datamodule.truncated["train"] == len(dataset)  # every long prompt was cut from the left, none dropped
    for item in (dataset[i] for i in range(len(dataset))):
        p = item["prompt_len"]
        assert item["chosen"][:p] == item["rejected"][:p] and len(item["chosen"]) <= 40
        assert item["chosen"][-1] == item["rejected"][-1] == datamodule.tokenizer.eos_token_id
    batch = datamodule.collate([dataset[0], dataset[1]])
    for row in range(4):
        p = [dataset[0], dataset[1]][row % 2]["prompt_len"]
        labelled = (batch["labels"][row] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert labelled and labelled[0] == p and all(batch["attention_mask"][row, i] == 1 for i in labelled)


def test_the_precomputed_reference_equals_the_live_one_and_is_not_recomputed_on_resume(make_cfg, tmp_path, caplog):
    import logging

    path = _prefs(tmp_path / "prefs.jsonl")
    common = [*DPO, "data.source.kind=file", f"data.source.path={path}", "method.lr=1e-3", "trainer.max_steps=6",
              "trainer.val_check_interval=3", "test=false", "export=false"]
    live = run(make_cfg(*common, subdir="live", fast=False))
    with caplog.at_level(logging.INFO):
        cached = run(make_cfg(*common, "method.precompute_reference=true", subdir="cached", fast=False))
    assert "reference log-probs of" in caplog.text
    for key in ("train/loss", "val/loss", "val/rewards/margin", "val/rewards/accuracy", "val/logps/chosen"):
        assert cached[key] == pytest.approx(live[key], rel=1e-5, abs=1e-6), key
    first = make_cfg(*common, "method.precompute_reference=true", "callbacks=[default,stop_at_step]",
                     "callbacks.stop_at_step.step=3", subdir="first", fast=False)
    run(first)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        resumed = run(make_cfg(*common, "method.precompute_reference=true",
                               f"ckpt_path={Path(first.paths.output_dir) / 'checkpoints' / 'last.ckpt'}",
                               subdir="resumed", fast=False))
    assert "reference log-probs of" not in caplog.text  # taken from the checkpoint, not from the trained weights
    assert resumed["val/loss"] == pytest.approx(cached["val/loss"], rel=1e-5)


@pytest.mark.parametrize("loss", ["sigmoid", "robust", "ipo", "hinge"])
def test_dpo_learns_a_toy_preference(loss, make_cfg, tmp_path):
    path = _prefs(tmp_path / "prefs.jsonl")
    extra = {"sigmoid": [], "robust": ["method.label_smoothing=0.1"], "ipo": [], "hinge": []}[loss]
    cfg = make_cfg(*DPO, "data.source.kind=file", f"data.source.path={path}", f"method.loss={loss}", *extra,
                   "method.lr=3e-3", "trainer.max_steps=40", "trainer.val_check_interval=40", fast=False)
    metrics = run(cfg)
    print(loss, {k: round(v, 3) for k, v in metrics.items() if k.startswith("test/")})
    assert metrics["test/rewards/accuracy"] > 0.9, metrics["test/rewards/accuracy"]
    assert metrics["test/rewards/margin"] > 0 and metrics["test/rewards/chosen"] > metrics["test/rewards/rejected"]


def test_dpo_tiny_runs_offline_with_samples_scored_and_exports(make_cfg):
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(*DPO[:-1], "data.source.max_articles=60", "method.evaluation.num_samples=4",
                   "method.evaluation.num_prompts=2", "method.evaluation.max_new_tokens=4", "method.rpo_alpha=0.5",
                   "method.lr=1e-2", "evaluate_at_start=true", fast=False)
    metrics = run(cfg)
    for key in ("train/loss", "val/rewards/accuracy", "test/rewards/margin", "test/logps/rejected",
                "val/prompted/score"):
        assert key in metrics and math.isfinite(metrics[key]), key
    # the KL of the held-out samples to the reference: 0 for the initial policy, positive once it has moved
    assert metrics["start/test/prompted/kl_to_reference"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["test/prompted/kl_to_reference"] > 0.01
    out = Path(cfg.paths.output_dir)
    assert AutoModelForCausalLM.from_pretrained(out / "export").config.pad_token_id is not None
    assert "direct preference optimisation" in (out / "export" / "README.md").read_text()
