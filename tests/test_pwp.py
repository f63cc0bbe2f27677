"""Preference-weighted pretraining: each objective by hand, token/score alignment, control tokens (insertion,
banning), filtering counts, the run end to end, resume parity, and the direction each objective moves a synthetic
preference."""

import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf.errors import DataError
from rlhf.objectives.pwp import awr_loss, distinct_n, expected_max, mle_loss, rwr_loss, unlikelihood_loss
from rlhf.train import build_data_and_module, run

PWP_FAST = ["experiment=pwp_tiny", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
            "model.intermediate_size=64", "model.tokenizer.vocab_size=512", "data.source.max_documents=150",
            "data.split.val_fraction=0.1", "data.split.test_fraction=0.1", "data.loader.batch_size=8",
            "data.block_size=32", "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false",
            "callbacks.progress_bar=null", "logger=csv", "method.warmup_steps=1", "method.evaluation.num_samples=8",
            "method.evaluation.num_prompts=4", "method.evaluation.max_new_tokens=8", "method.evaluation.k=4"]

# two tokens (ids 1, 2) over a vocabulary of 3; p(label) chosen by hand
LOGITS = torch.log(torch.tensor([[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]]))
LABELS = torch.tensor([[1, 2]])


# ---- objectives by hand -------------------------------------------------------------------------------------------
def test_mle_and_ignored_labels_by_hand():
    loss, _ = mle_loss(LOGITS, LABELS)
    assert float(loss) == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2, abs=1e-6)
    loss, _ = mle_loss(LOGITS, torch.tensor([[1, -100]]))
    assert float(loss) == pytest.approx(-math.log(0.5), abs=1e-6)


def test_unlikelihood_strict_and_soft_by_hand():
    misaligned = torch.tensor([[False, True]])
    loss, logs = unlikelihood_loss(LOGITS, LABELS, misaligned, alpha=0.5)
    # token 1 aligned: -log 0.5; token 2 misaligned: -0.5 * log(1 - 0.8)
    assert float(loss) == pytest.approx((-math.log(0.5) - 0.5 * math.log(0.2)) / 2, abs=1e-5)
    assert float(logs["aligned_token_fraction"]) == 0.5
    scores = torch.tensor([[0.25, 1.0]])  # soft: weights 1 - score
    loss, _ = unlikelihood_loss(LOGITS, LABELS, misaligned, alpha=1.0, scores=scores, mode="soft")
    token1 = 0.75 * -math.log(0.5) + 0.25 * -math.log(0.5)
    token2 = 0.0 * -math.log(0.8) + 1.0 * -math.log(0.2)
    assert float(loss) == pytest.approx((token1 + token2) / 2, abs=1e-5)


def test_rwr_weights_and_clamp_by_hand():
    rewards = torch.tensor([[1.0, -2.0]])
    loss, logs = rwr_loss(LOGITS, LABELS, rewards, beta=2.0)
    w1, w2 = math.exp(0.5), math.exp(-1.0)
    assert float(loss) == pytest.approx((w1 * -math.log(0.5) + w2 * -math.log(0.8)) / 2, abs=1e-5)
    _, logs = rwr_loss(LOGITS, LABELS, torch.tensor([[10.0, 0.0]]), beta=1.0, weight_max=5.0)
    assert float(logs["weight_max"]) == 5.0


def test_awr_advantage_clamp_and_value_loss_by_hand():
    rewards = torch.tensor([[1.0, -1.0]])
    values = torch.tensor([[0.5, 0.0]], requires_grad=True)
    loss, logs = awr_loss(LOGITS, LABELS, rewards, values, alpha=0.25, beta=1.0, weight_max=1.5)
    w1, w2 = min(math.exp(0.5), 1.5), math.exp(-1.0)  # A = R - V: 0.5 (clamped to 1.5), -1
    weighted = (w1 * -math.log(0.5) + w2 * -math.log(0.8)) / 2
    value = ((0.5 - 1.0) ** 2 + (0.0 + 1.0) ** 2) / 2
    assert float(loss.detach()) == pytest.approx(0.25 * weighted + 0.75 * value, abs=1e-5)
    loss.backward()  # the advantage is detached: V gets gradient from the value loss only
    assert torch.allclose(values.grad, 0.75 * 2 * (values.detach() - rewards) / 2)


def test_diversity_and_expected_max_by_hand():
    assert distinct_n([[1, 2, 1, 2]], 1) == 0.5 and distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)
    assert expected_max(torch.tensor([0.1, 0.9, 0.3, 0.2]), k=2) == pytest.approx((0.9 + 0.3) / 2)


# ---- data ---------------------------------------------------------------------------------------------------------
def _write_corpus(path: Path, n_docs: int = 120, seed: int = 0) -> Path:
    """Documents of 4 sentences, each 'The weather is sunny in report N.' (score +1) or '... rainy ...' (-1)."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for d in range(n_docs):
            kinds = [rng.random() < 0.5 for _ in range(4)]
            segments = [f"The weather is {'sunny' if good else 'rainy'} in report {d}." for good in kinds]
            handle.write(json.dumps({"segments": segments, "scores": [1.0 if g else -1.0 for g in kinds]}) + "\n")
    return path


def _synthetic(tmp_path: Path, *extra: str) -> list[str]:
    corpus = _write_corpus(tmp_path / "weather.jsonl")
    return [*PWP_FAST, "data.source.kind=file", f"data.source.path={corpus}", "data.scores.score_from=segments",
            "data.scores.threshold=0.0", "data.source.max_documents=null", "method.evaluation.enabled=false", *extra]


def test_scores_are_broadcast_to_their_tokens_and_aligned_with_the_predicted_token(make_cfg, tmp_path):
    cfg = make_cfg(*_synthetic(tmp_path), fast=False)
    datamodule, _ = build_data_and_module(cfg, tmp_path / "tok")
    datamodule.setup("fit")
    tok = datamodule.tokenizer
    block = datamodule.datasets["train"][0]
    ids, scores = block["input_ids"].tolist(), block["scores"].tolist()
    text_ids = [tok.convert_tokens_to_ids(t) for t in ("Ġsunny", "Ġrainy")]
    for i, token in enumerate(ids):
        if token == text_ids[0]:
            assert scores[i] == 1.0  # a token of a sunny sentence carries that sentence's score
        if token == text_ids[1]:
            assert scores[i] == -1.0
    batch = datamodule.collate([block])
    assert torch.equal(batch["misaligned"], batch["scores"] < 0) and torch.equal(batch["rewards"], batch["scores"])


def test_conditional_inserts_control_tokens_by_threshold_and_keeps_eval_text_bare(make_cfg, tmp_path):
    cfg = make_cfg(*_synthetic(tmp_path, "method.objective=conditional", "data.conditional.drop_token_fraction=0.0"),
                   fast=False)
    datamodule, module = build_data_and_module(cfg, tmp_path / "tok")
    datamodule.setup("fit")
    aligned, misaligned = datamodule.control_token_ids
    assert module.control_ids == [aligned, misaligned]
    ids = torch.cat([datamodule.datasets["train"][i]["input_ids"] for i in range(len(datamodule.datasets["train"]))])
    scores = torch.cat([datamodule.datasets["train"][i]["scores"] for i in range(len(datamodule.datasets["train"]))])
    assert (scores[ids == aligned] == 1.0).all() and (scores[ids == misaligned] == -1.0).all()
    weather = datamodule.tokenizer.convert_tokens_to_ids("Ġweather")  # once per segment
    controls = int((ids == aligned).sum() + (ids == misaligned).sum())
    assert abs(controls - int((ids == weather).sum())) <= 1  # one control token per segment (packing cuts the tail)
    val = torch.cat([datamodule.datasets["val"][i]["input_ids"] for i in range(len(datamodule.datasets["val"]))])
    assert not torch.isin(val, torch.tensor([aligned, misaligned])).any()
    # the new embedding rows start at the mean of the others (plus 0.01 noise)
    emb = module.model.get_input_embeddings().weight
    mean = emb[:aligned].mean(0)
    assert (emb[aligned] - mean).abs().max() < 0.1 and (emb[misaligned] - mean).abs().max() < 0.1


def test_generation_never_samples_the_banned_control_tokens(make_cfg, tmp_path):
    from rlhf.callbacks.generation import GenerateAndScore

    cfg = make_cfg(*_synthetic(tmp_path, "method.objective=conditional"), fast=False)
    datamodule, module = build_data_and_module(cfg, tmp_path / "tok")
    with torch.no_grad():  # make the control tokens by far the likeliest next tokens
        module.model.get_input_embeddings().weight[module.control_ids] *= 50
    texts, tokens, kls = GenerateAndScore({"max_new_tokens": 12}, seed=0).generate(module, [""] * 16,
                                                                                  torch.Generator().manual_seed(0))
    assert kls is None  # PWP has no reference policy: no KL is reported
    flat = [t for row in tokens for t in row]
    assert flat and not set(flat) & set(module.control_ids)


def test_filtering_leaves_out_and_counts_documents(make_cfg, tmp_path):
    cfg = make_cfg(*_synthetic(tmp_path, "method.objective=filtering"), fast=False)
    datamodule, _ = build_data_and_module(cfg, tmp_path / "tok")
    datamodule.setup("fit")
    docs = datamodule.splits["train"]
    expected = sum(1 for d in docs if sum(d["scores"]) / len(d["scores"]) < 0.0)
    assert datamodule.data_metrics()["data/filtered_documents"] == expected > 0
    strict = make_cfg(*_synthetic(tmp_path, "method.objective=filtering", "data.scores.filter_threshold=2.0"),
                      fast=False, subdir="all")
    datamodule, _ = build_data_and_module(strict, tmp_path / "tok2")
    with pytest.raises(DataError, match="filtering left no training documents"):
        datamodule.setup("fit")


def test_non_finite_scores_are_an_error_naming_the_row(make_cfg, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"segments": ["a b c."], "scores": [0.5]}) + "\n"
                   + json.dumps({"segments": ["d e f.", "g h."], "scores": [0.1, "nan"]}) + "\n")
    cfg = make_cfg(*PWP_FAST, "data.source.kind=file", f"data.source.path={bad}", "data.scores.score_from=segments",
                   "data.source.max_documents=null", fast=False)
    with pytest.raises(DataError, match=r"bad.jsonl, row 2, segment 1: score 'nan' is not finite"):
        build_data_and_module(cfg, tmp_path / "tok")


# ---- runs ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["conditional", "awr"])
def test_pwp_run_end_to_end_exports_a_causal_lm(make_cfg, objective):
    cfg = make_cfg(*PWP_FAST, f"method.objective={objective}", fast=False)
    metrics = run(cfg)
    for key in ("val/lm_loss", "test/perplexity", "test/unconditional/misalignment",
                "test/unconditional/misalignment_max@4", "test/unconditional/misaligned_fraction",
                "test/prompted/distinct_2", "data/train_misaligned_segment_fraction"):
        assert key in metrics and math.isfinite(metrics[key]), key
    out = Path(cfg.paths.output_dir)
    model = AutoModelForCausalLM.from_pretrained(out / "export")
    tok = AutoTokenizer.from_pretrained(out / "export")
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    if objective == "conditional":  # the extended tokenizer travels with the export
        assert {"<|aligned|>", "<|misaligned|>"} <= set(tok.get_vocab())
    assert (out / "samples").exists()


def test_pwp_resume_parity(make_cfg):
    common = [*PWP_FAST, "method.objective=awr", "trainer.max_steps=6", "trainer.val_check_interval=3", "test=false",
              "export=false", "method.evaluation.enabled=false"]
    full = run(make_cfg(*common, subdir="full", fast=False))
    first = make_cfg(*common, "callbacks=[default,stop_at_step]", "callbacks.stop_at_step.step=3", subdir="first", fast=False)
    run(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = run(make_cfg(*common, f"ckpt_path={ckpt}", subdir="resumed", fast=False))
    for key in ("train/loss", "train/value_loss", "val/lm_loss"):
        assert resumed[key] == pytest.approx(full[key], abs=1e-6), key


def _p_rainy(module, datamodule, prefix_ids: list[int]) -> float:
    """P(' rainy') / (P(' rainy') + P(' sunny')) after '<prefix> The weather is'."""
    tok = datamodule.tokenizer
    ids = prefix_ids + tok(" The weather is", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(module.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    rainy, sunny = (tok(w, add_special_tokens=False)["input_ids"][0] for w in (" rainy", " sunny"))
    return float(probs[rainy] / (probs[rainy] + probs[sunny]))


def test_each_objective_moves_the_synthetic_preference_the_expected_way(make_cfg, tmp_path):
    results = {}
    for objective in ("mle", "filtering", "conditional", "unlikelihood", "rwr", "awr"):
        steps = 300 if objective == "conditional" else 100
        cfg = make_cfg(*_synthetic(tmp_path, f"method.objective={objective}", f"trainer.max_steps={steps}",
                                   f"trainer.val_check_interval={steps}", "method.lr=3e-3", "data.loader.batch_size=16",
                                   "test=false", "export=false", "data.conditional.drop_token_fraction=0.0",
                                   "method.control_init_noise=1.0", "trainer.limit_val_batches=1"),
                       fast=False, subdir=objective)
        run(cfg)
        datamodule, module = build_data_and_module(cfg, tmp_path / objective / "tok")
        state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        module.eval()
        if objective == "conditional":
            results[objective] = _p_rainy(module, datamodule, [module.control_ids[0]])
            results["conditional/misaligned_prefix"] = _p_rainy(module, datamodule, [module.control_ids[1]])
        else:
            results[objective] = _p_rainy(module, datamodule, [])
    assert 0.3 < results["mle"] < 0.7, results  # half the sentences are rainy
    for objective in ("filtering", "unlikelihood", "rwr", "awr"):
        assert results[objective] < results["mle"] - 0.05, (objective, results)  # filtering: 0.39 vs 0.48
    # conditional training: the <|aligned|> prefix makes the misaligned continuation less likely than <|misaligned|>
    assert results["conditional"] < results["conditional/misaligned_prefix"] - 0.1, results


def test_the_objective_registry_is_the_one_list_of_choices():
    """Adding an objective is one class in rlhf/objectives/pwp.py and its name in OBJECTIVES: the schema's choices
    (method.objective and data.objective) are that list, and each class builds from the method's settings."""
    import dataclasses

    from rlhf.config import as_config
    from rlhf.methods.pwp.config import PWPDataConf, PWPMethodConf
    from rlhf.objectives.pwp import AWR, OBJECTIVES, Unlikelihood

    for schema in (PWPMethodConf, PWPDataConf):
        field = next(f for f in dataclasses.fields(schema) if f.name == "objective")
        assert field.metadata["choices"] == tuple(OBJECTIVES)
    cfg = as_config(PWPMethodConf, {"unlikelihood_alpha": 0.3, "awr_alpha": 0.7, "beta": 2.0})
    assert OBJECTIVES["unlikelihood"].from_config(cfg) == Unlikelihood(0.3, "strict")
    assert OBJECTIVES["awr"].from_config(cfg) == AWR(0.7, 2.0, 1000.0) and AWR.needs_values
    assert not OBJECTIVES["filtering"].needs_values
