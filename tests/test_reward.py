"""Reward modeling: the maths by hand, the score index under both paddings, every malformed-data case, simulated
feedback, the run end to end (export, scorer, chaining from the MLM export) and resume parity."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rlhf.data.feedback import Policy, encode_pair, validate_records
from rlhf.data.readers import DropReport, read_records
from rlhf.data.simulated_feedback import make_feedback
from rlhf.data.tokenizer import train_tokenizer
from rlhf.errors import DataError, ModelError
from rlhf.methods.reward.module import evaluation_metrics
from rlhf.models.reward import build_reward_model, reward_head, reward_scores
from rlhf.objectives.reward import bradley_terry_loss, calibration_error, spearman
from rlhf.scoring.reward_model import RewardModelScorer
from rlhf.train import run

TINY = {"source": "config", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64, "dropout": 0.0, "attention_dropout": 0.0}
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "markets rose sharply today", "the team won the cup"] * 20
REWARD_FAST = ["experiment=reward_tiny", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
               "model.intermediate_size=64", "model.tokenizer.vocab_size=512", "data.source.max_articles=60",
               "data.loader.batch_size=8", "data.max_length=48", "trainer.max_steps=6", "trainer.val_check_interval=3",
               "trainer.limit_val_batches=3", "trainer.limit_test_batches=3", "trainer.log_every_n_steps=1",
               "trainer.enable_model_summary=false", "callbacks.progress_bar=null", "logger=csv",
               "method.warmup_steps=1"]


# ---- maths --------------------------------------------------------------------------------------------------------
def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    loss, logs = bradley_terry_loss(chosen, rejected)
    expected = (-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert logs["accuracy"].item() == 0.5 and logs["margin"].item() == 0.0
    loss_m, _ = bradley_terry_loss(chosen, rejected, torch.tensor([0.5, 0.0]))
    expected_m = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert math.isclose(loss_m.item(), expected_m, rel_tol=1e-6)


def test_calibration_error_by_hand():
    # says 90% twice, right once: symmetrised bins {0.9: outcome 0.5} and {0.1: outcome 0.5} -> 0.4
    assert math.isclose(calibration_error(torch.tensor([0.9, 0.9]), torch.tensor([1.0, 0.0])).item(), 0.4,
                        rel_tol=1e-6)
    assert calibration_error(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() < 1e-7


def test_spearman_by_hand_with_ties():
    assert math.isclose(spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 20, 40, 30])).item(), 0.8,
                        rel_tol=1e-6)
    # ties share the average rank: y ranks [0.5, 0.5, 2, 3]
    rx, ry = torch.tensor([0.0, 1, 2, 3]), torch.tensor([0.5, 0.5, 2, 3])
    expected = torch.corrcoef(torch.stack([rx, ry]))[0, 1].item()
    assert math.isclose(spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([5.0, 5, 6, 7])).item(), expected,
                        rel_tol=1e-5)


def test_pairwise_metrics_gold_agreement_by_hand():
    values = {"chosen": torch.tensor([1.0, 0.0, 2.0, 0.5]), "rejected": torch.tensor([0.0, 1.0, 1.0, 0.5]),
              "gold_chosen": torch.tensor([0.5, 0.2, -0.1, 0.0]), "gold_rejected": torch.tensor([0.1, 0.3, 0.4, 0.0])}
    m = evaluation_metrics("pairwise", values)
    assert m["accuracy"].item() == 0.5  # pairs 1 and 3 ordered right; pair 4 is a tie (not > 0)
    # gold-decided pairs 1-3: the RM agrees with gold on pair 1 and 2 (both say rejected better), not on 3
    assert math.isclose(m["gold_agreement"].item(), 2 / 3, rel_tol=1e-6)
    # labels vs gold: pair 1 agrees, 2 and 3 not, 4 is a gold tie (one half)
    assert math.isclose(m["label_gold_agreement"].item(), 1.5 / 4, rel_tol=1e-6)


# ---- the score index ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizers():
    return {"bert": train_tokenizer(TEXTS, "wordpiece", 200), "gpt2": train_tokenizer(TEXTS, "bpe", 300)}


@pytest.mark.parametrize("arch", ["bert", "roformer", "gpt2"])
def test_score_is_the_same_under_left_right_and_no_padding(tokenizers, arch):
    tok = tokenizers["gpt2" if arch == "gpt2" else "bert"]
    torch.manual_seed(0)
    model = build_reward_model({**TINY, "arch": arch}, tok).eval()
    assert tok.pad_token_id != tok.eos_token_id
    sequences = [tok(t)["input_ids"] + ([tok.eos_token_id] if arch == "gpt2" else [])
                 for t in ["the cat sat", "a dog ran in the park today", "markets"]]
    alone = torch.stack([reward_scores(model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))[0]
                         for s in sequences])
    length = max(map(len, sequences))
    for side in ("left", "right"):
        ids = torch.full((3, length), tok.pad_token_id)
        mask = torch.zeros((3, length), dtype=torch.long)
        for i, s in enumerate(sequences):
            span = slice(length - len(s), length) if side == "left" else slice(0, len(s))
            ids[i, span], mask[i, span] = torch.tensor(s), 1
        with torch.no_grad():
            assert torch.allclose(reward_scores(model, ids, mask), alone, atol=1e-5), side


def test_causal_reward_model_refuses_pad_equal_to_eos(tokenizers):
    tok = train_tokenizer(TEXTS, "bpe", 300)
    tok.pad_token = tok.eos_token
    with pytest.raises(ModelError, match="pad token distinct from EOS"):
        build_reward_model({**TINY, "arch": "gpt2"}, tok)


@pytest.mark.parametrize("arch", ["bert", "roformer"])
def test_head_initialised_with_std_one_over_sqrt_d_plus_one(tokenizers, arch):
    model = build_reward_model({**TINY, "arch": arch, "hidden_size": 256, "num_heads": 4},
                               tokenizers["bert"])
    head = reward_head(model)
    assert head.out_features == 1  # RoFormer's head is dense + tanh + out_proj: the init is out_proj's
    assert abs(head.weight.std().item() - 1 / math.sqrt(257)) < 0.2 / math.sqrt(257)
    assert torch.count_nonzero(head.bias) == 0


# ---- malformed data -----------------------------------------------------------------------------------------------
def _rows(records):
    return list(enumerate(records, start=1))


def test_each_malformed_pair_is_dropped_and_counted():
    records = [{"prompt": "p", "chosen": "good", "rejected": "bad"},
               {"prompt": "p", "chosen": "  ", "rejected": "bad"},
               {"prompt": "p", "chosen": "same", "rejected": "same"},
               {"prompt": "p", "chosen": "a", "rejected": "b", "margin": float("nan")},
               {"prompt": "", "chosen": "a", "rejected": "b", "margin": 1.5}]
    report = DropReport("pairs.jsonl")
    clean = validate_records(_rows(records), "pairs", {}, "pairs.jsonl", Policy(), report)
    assert [r["chosen"] for r in clean] == ["good", "a"] and clean[1]["margin"] == 1.5
    assert dict(report.dropped) == {"empty": 1, "identical": 1, "nonfinite": 1}
    assert report.metrics()["data/dropped_identical"] == 1.0


def test_missing_field_is_an_error_naming_the_row():
    with pytest.raises(DataError, match=r"pairs\.jsonl, row 2: missing field 'rejected' \(fields present: chosen, "
                                        r"prompt\)"):
        validate_records(_rows([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}]),
                         "pairs", {}, "pairs.jsonl", Policy(), DropReport("x"))


def test_strict_turns_a_drop_into_an_error_and_error_policy_too():
    bad = _rows([{"prompt": "p", "chosen": "same", "rejected": "same"}])
    with pytest.raises(DataError, match=r"row 1: chosen == rejected.*data.strict=false"):
        validate_records(bad, "pairs", {}, "f", Policy(strict=True), DropReport("x"))
    with pytest.raises(DataError, match=r"data.policy.identical=drop"):
        validate_records(bad, "pairs", {}, "f", Policy({"identical": "error"}), DropReport("x"))


def test_ratings_nonfinite_and_configurable_columns():
    records = [{"q": "p", "a": "fine", "score": 4}, {"q": "p", "a": "x", "score": "n/a"},
               {"q": "p", "a": "y", "score": float("inf")}]
    report = DropReport("r")
    clean = validate_records(_rows(records), "ratings", {"prompt": "q", "response": "a", "rating": "score"}, "r",
                             Policy(), report)
    assert clean == [{"prompt": "p", "response": "fine", "rating": 4.0}]
    assert report.dropped["nonfinite"] == 2


def test_over_long_prompt_is_cut_from_the_left_and_responses_keep_their_tails():
    layout = {"bos": [101], "sep": [102], "eos": [102]}
    prompt, chosen, rejected = list(range(1, 21)), [50, 51, 52], [60, 61, 62, 63, 64]
    sequences, truncated = encode_pair(prompt, [chosen, rejected], max_length=16, layout=layout)
    assert truncated
    # room = 16 - 3 specials - 5 (longest response) = 8 prompt tokens, the last 8
    assert sequences[0] == [101, *range(13, 21), 102, 50, 51, 52, 102]
    assert sequences[1] == [101, *range(13, 21), 102, 60, 61, 62, 63, 64, 102]
    assert encode_pair(prompt, [list(range(20))], max_length=16, layout=layout) is None  # response alone too long


def test_datamodule_counts_too_long_and_identical_after_truncation(make_cfg, tmp_path):
    good = [{"prompt": "headline", "chosen": f"good news number {i}", "rejected": f"bad news number {i}"}
            for i in range(40)]
    bad = [{"prompt": "p", "chosen": "Hello World", "rejected": "hello world"},  # same ids once lower-cased
           {"prompt": "p", "chosen": "word " * 80, "rejected": "short"}]  # cannot fit max_length=32
    for split, rows in (("train", good + bad), ("val", good[:10]), ("test", good[:10])):
        (tmp_path / f"prefs_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_cfg(*REWARD_FAST, "data=feedback_file", f"data.source.path='{tmp_path}/prefs_{{split}}.jsonl'",
                   "data.max_length=32", fast=False)
    from rlhf.train import build_data_and_module

    datamodule, _ = build_data_and_module(cfg, tmp_path / "tok")
    dataset = datamodule.build_dataset("train")
    assert len(dataset) == 40
    assert dict(datamodule.reports["train"].dropped) == {"identical_after_truncation": 1, "too_long": 1}
    metrics = datamodule.data_metrics()
    assert metrics["data/train/dropped_too_long"] == 1.0 and metrics["data/train/kept"] == 42.0
    strict = make_cfg(*REWARD_FAST, "data=feedback_file", f"data.source.path='{tmp_path}/prefs_{{split}}.jsonl'",
                      "data.max_length=32", "data.strict=true", fast=False, subdir="strict")
    datamodule, _ = build_data_and_module(strict, tmp_path / "tok2")
    with pytest.raises(DataError, match=r"train record 41 .*same tokens"):
        datamodule.build_dataset("train")


# ---- simulated feedback -------------------------------------------------------------------------------------------
def test_simulated_feedback_splits_share_no_text_and_noise_follows_temperature():
    sharp = make_feedback(temperature=1e-4, max_articles=120, pairs_per_article=3)
    texts = {s: {t for r in sharp["pairs"][s] for t in (r["chosen"], r["rejected"])} for s in ("train", "val", "test")}
    assert not (texts["train"] & texts["val"]) and not (texts["train"] & texts["test"])
    decided = [r for r in sharp["pairs"]["train"] if r["gold_chosen"] != r["gold_rejected"]]
    assert sum(r["gold_chosen"] > r["gold_rejected"] for r in decided) / len(decided) > 0.98
    noisy = make_feedback(temperature=100.0, max_articles=120, pairs_per_article=3)["pairs"]["train"]
    decided = [r for r in noisy if r["gold_chosen"] != r["gold_rejected"]]
    assert 0.35 < sum(r["gold_chosen"] > r["gold_rejected"] for r in decided) / len(decided) < 0.65
    ratings = sharp["ratings"]["train"]
    assert {r["rating"] for r in ratings} <= {1.0, 2.0, 3.0, 4.0, 5.0}


# ---- end to end ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("objective,arch", [("pairwise", "bert"), ("rating", "bert"), ("pairwise", "roformer"),
                                            ("pairwise", "gpt2")])
def test_reward_run_exports_a_sequence_classifier_and_scorer(make_cfg, objective, arch):
    algorithm = "bpe" if arch == "gpt2" else "wordpiece"
    cfg = make_cfg(*REWARD_FAST, f"method.objective={objective}", f"model.arch={arch}",
                   f"model.tokenizer.algorithm={algorithm}", f"data.max_length={128 if arch == 'gpt2' else 48}",
                   fast=False)
    metrics = run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    key = "test/accuracy" if objective == "pairwise" else "test/spearman"
    assert key in metrics and "test/reward_std" in metrics
    if objective == "pairwise":
        assert 0.0 <= metrics["test/calibration_error"] <= 1.0 and "test/gold_agreement" in metrics
    else:
        assert "test/gold_spearman" in metrics
    exported = AutoModelForSequenceClassification.from_pretrained(run_dir / "export")
    assert exported.config.num_labels == 1 and exported.config.reward_std > 0
    scorer = RewardModelScorer(run_dir / "export")
    scores = scorer.score(["Shares rose", ""], ["Profits jumped to a record high.", "The firm collapsed."])
    raw = RewardModelScorer(run_dir / "export", normalize=False).score(["Shares rose", ""],
                                                                        ["Profits jumped to a record high.",
                                                                         "The firm collapsed."])
    cfg_exp = exported.config
    assert torch.allclose(scores, (raw - cfg_exp.reward_mean) / cfg_exp.reward_std, atol=1e-5)
    assert scores.shape == (2,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("arch", ["bert", "roformer"])
def test_reward_model_starts_from_the_mlm_export(make_cfg, arch):
    mlm = make_cfg("trainer.max_steps=2", "trainer.val_check_interval=2", f"model.arch={arch}", subdir="mlm")
    run(mlm)
    export = Path(mlm.paths.output_dir) / "export"
    cfg = make_cfg(*REWARD_FAST, "model=pretrained", f"model.name_or_path={export}", fast=False, subdir="rm")
    from rlhf.train import build_data_and_module

    _, module = build_data_and_module(cfg, Path(cfg.paths.output_dir) / "tok")
    from transformers import AutoModelForMaskedLM

    encoder = AutoModelForMaskedLM.from_pretrained(export)
    assert type(encoder).__name__ == {"bert": "BertForMaskedLM", "roformer": "RoFormerForMaskedLM"}[arch]
    assert type(module.model).__name__ == {"bert": "BertForSequenceClassification",
                                           "roformer": "RoFormerForSequenceClassification"}[arch]
    base, pretrained = getattr(module.model, arch), getattr(encoder, arch)
    assert torch.equal(base.embeddings.word_embeddings.weight, pretrained.embeddings.word_embeddings.weight)
    assert torch.equal(base.encoder.layer[-1].output.dense.weight, pretrained.encoder.layer[-1].output.dense.weight)
    # Fine-tuned in train mode (dropout on), although from_pretrained hands the encoder over in eval mode and
    # Lightning keeps each submodule's mode: in eval mode the pretrained arm of a comparison trains without dropout.
    assert base.embeddings.dropout.p > 0
    assert [name for name, sub in module.named_modules() if not sub.training] == []
    assert run(cfg)["trainer/global_step"] == 6


def test_reward_resume_parity(make_cfg):
    common = [*REWARD_FAST, "trainer.max_steps=8", "trainer.val_check_interval=4", "test=false", "export=false"]
    full = run(make_cfg(*common, fast=False, subdir="full"))
    first = make_cfg(*common, "callbacks=[default,stop_at_step]", "callbacks.stop_at_step.step=4", fast=False, subdir="first")
    run(first)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = run(make_cfg(*common, f"ckpt_path={ckpt}", fast=False, subdir="resumed"))
    for key in ("val/loss", "val/accuracy", "train/loss"):
        assert abs(resumed[key] - full[key]) <= 1e-6, key


def test_make_feedback_command_writes_readable_split_files(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "rlhf.data.simulated_feedback", "--out", str(tmp_path),
                          "--max-articles", "40", "--temperature", "0.2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for kind, fields in (("pairs", ("prompt", "chosen", "rejected")), ("ratings", ("prompt", "response", "rating"))):
        for split in ("train", "val", "test"):
            rows = list(read_records(tmp_path / f"{kind}_{split}.jsonl"))
            assert rows and all(all(f in r for f in fields) for _, r in rows)
    bad = subprocess.run([sys.executable, "-m", "rlhf.data.simulated_feedback", "--out", str(tmp_path),
                          "--temperature", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--temperature must be > 0" in bad.stderr


# ---- experiments/reward_learning/valence_probe.py -------------------------------------------------------------------
def _valence_probe():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / "reward_learning" / "valence_probe.py"
    spec = importlib.util.spec_from_file_location("valence_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_valence_probe_reads_vader_words_and_finds_valence_only_where_it_is():
    pytest.importorskip("vaderSentiment")
    probe = _valence_probe()
    words = probe.vader_words()
    assert words["good"] > 0 and words["bad"] < 0 and len(words) > 5000
    tokenizer = train_tokenizer(TEXTS + ["good bad great awful"] * 5, "wordpiece", vocab_size=128)
    kept, ids, labels = probe.single_token_words(tokenizer, {"good": 1.9, "bad": -2.5, "meh": 0.0, "zzzq": 1.0})
    # "meh" has no valence and "zzzq" is not one token of this vocabulary: neither is probed
    assert kept == ["bad", "good"] and list(labels) == [0, 1]
    assert ids == [tokenizer.convert_tokens_to_ids("bad"), tokenizer.convert_tokens_to_ids("good")]
    gen = np.random.default_rng(0)
    y = np.array([0, 1] * 60)
    noise = gen.normal(size=(120, 16))
    informative = noise + 3.0 * y[:, None] * np.eye(16)[0]  # one direction carries the label (Bayes accuracy 0.93)
    assert probe.probe(informative, y)[0] > 0.85
    assert probe.probe(noise, y)[0] < 0.7
