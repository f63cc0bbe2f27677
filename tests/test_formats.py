"""Public preference formats (``data.source.format``): each reader by hand, then each format trained on as a user
would, from a small file written in the real format (HH-RLHF's .jsonl.gz, UltraFeedback-binarized as a dataset
with its own train_prefs/test_prefs splits, summarize-from-feedback and SHP jsonl)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rlhf.data.formats import (
    Malformed,
    hh_turns,
    plain_template,
    read_hh,
    read_shp,
    read_tldr,
    read_ultrafeedback,
    render_prompt,
)
from rlhf.errors import DataError
from rlhf.train import run

W = "file.jsonl, row 1"


def test_hh_prompt_is_the_shared_prefix_through_the_last_assistant_turn():
    chosen = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant: An apple."
    rejected = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant: A rock."
    record = read_hh({"chosen": chosen, "rejected": rejected}, W)
    assert record == {"prompt": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                                 {"role": "user", "content": "Name a fruit."}],
                      "chosen": "An apple.", "rejected": "A rock."}
    # without a chat template the plain template gives back HH's own text, so the prompt is what HH shows
    assert plain_template(record["prompt"]) == chosen[: chosen.rfind("Assistant:") + len("Assistant:")]
    assert hh_turns("\n\nHuman: a\nb\n\nAssistant: c") == [{"role": "user", "content": "a\nb"},
                                                          {"role": "assistant", "content": "c"}]


def test_hh_rows_that_disagree_are_malformed_and_missing_fields_are_errors():
    with pytest.raises(Malformed, match="differ before the last Assistant"):
        read_hh({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: b"}, W)
    with pytest.raises(Malformed, match="no Assistant"):
        read_hh({"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: a"}, W)
    with pytest.raises(DataError, match=r"row 1: missing field 'rejected'.*data.source.format"):
        read_hh({"chosen": "\n\nHuman: a\n\nAssistant: b"}, W)


def test_ultrafeedback_messages_and_score_margin():
    user = {"role": "user", "content": "Say hi"}
    row = {"prompt": "Say hi", "chosen": [user, {"role": "assistant", "content": "Hi!"}],
           "rejected": [user, {"role": "assistant", "content": "No."}], "score_chosen": 8.5, "score_rejected": 3.0}
    assert read_ultrafeedback(row, W) == {"prompt": [user], "chosen": "Hi!", "rejected": "No.", "margin": 5.5}
    other = {**row, "rejected": [{"role": "user", "content": "Say bye"}, {"role": "assistant", "content": "No."}]}
    with pytest.raises(Malformed, match="different prompts"):
        read_ultrafeedback(other, W)
    with pytest.raises(DataError, match="list of {role, content} messages"):
        read_ultrafeedback({**row, "chosen": "Hi!"}, W)


def test_tldr_and_shp_pick_the_preferred_response():
    row = {"info": {"post": "My cat ran away. ", "title": "Cat", "subreddit": "pets"},
           "summaries": [{"text": " Cat gone."}, {"text": " Dog here."}], "choice": 1}
    assert read_tldr(row, W) == {"prompt": "SUBREDDIT: r/pets\nTITLE: Cat\nPOST: My cat ran away.\n\nTL;DR:",
                                 "chosen": "Dog here.", "rejected": "Cat gone."}
    with pytest.raises(Malformed, match="choice=2"):
        read_tldr({**row, "choice": 2}, W)
    shp = {"history": "Why is the sky blue?", "human_ref_A": "Rayleigh scattering.", "human_ref_B": "Magic.",
           "labels": 1, "score_A": 50, "score_B": 2}
    assert read_shp(shp, W) == {"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering.", "rejected": "Magic."}
    assert read_shp({**shp, "labels": 0}, W)["chosen"] == "Magic."


def test_messages_are_rendered_with_the_chat_template_when_the_tokenizer_has_one():
    from rlhf.data.tokenizer import train_tokenizer

    messages = [{"role": "user", "content": "Hi"}]
    tokenizer = train_tokenizer(["hi there", "hello"], "bpe", 300, 1, False)
    assert render_prompt(tokenizer, messages) == "\n\nHuman: Hi\n\nAssistant:"  # no template: the plain one
    tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    assert render_prompt(tokenizer, messages) == "<user>Hi<assistant>"
    assert render_prompt(tokenizer, "plain text") == "plain text"


# ---- end to end: rlhf-train on files in the real formats ---------------------------------------------------------
TOPICS = ["the weather", "a good book", "the football match", "the new film", "the election", "cooking pasta",
          "a trip to Rome", "learning Python", "the stock market", "a birthday party", "the garden", "a lost cat"]
GOOD = ["I really love {t}, it was wonderful and great fun.", "What a delightful, happy story about {t}!"]
BAD = ["I hate {t}, it was awful and terrible.", "A sad, horrible and boring account of {t}."]


def _pairs(n: int):
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        yield f"Tell me about {topic} ({i}).", GOOD[i % 2].format(t=topic), BAD[(i // 2) % 2].format(t=topic)


def _hh_rows(n):
    for prompt, good, bad in _pairs(n):
        context = f"\n\nHuman: Hello.\n\nAssistant: Hi, how can I help?\n\nHuman: {prompt}\n\nAssistant:"
        yield {"chosen": f"{context} {good}", "rejected": f"{context} {bad}"}
    yield {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}  # malformed


def _write_jsonl(path: Path, rows, compress: bool = False) -> Path:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


RUN = ["experiment=reward_tiny", "data=feedback_file", "model.hidden_size=32", "model.num_layers=1",
       "model.num_heads=2", "model.intermediate_size=64", "model.tokenizer.vocab_size=400", "data.loader.batch_size=8",
       "data.max_length=64", "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.limit_val_batches=2",
       "trainer.limit_test_batches=2", "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
       "logger=csv", "data.split.val_fraction=0.15", "data.split.test_fraction=0.15", "export=false"]


def _train(make_cfg, path: Path, fmt: str, *extra: str) -> dict:
    """One run (in its own run dir) of a tiny reward model on ``path`` read as ``fmt``."""
    cfg = make_cfg(*RUN, f"data.source.path={path}", f"data.source.format={fmt}", *extra, fast=False,
                   subdir=f"{fmt}-{abs(hash(extra))}")
    return run(cfg)


def test_hh_rlhf_jsonl_gz_trains(make_cfg, tmp_path):
    metrics = _train(make_cfg, _write_jsonl(tmp_path / "train.jsonl.gz", _hh_rows(120), compress=True), "hh")
    assert metrics["trainer/global_step"] == 4.0 and metrics["data/kept"] == 120.0
    assert metrics["data/dropped_malformed"] == 1.0


def test_tldr_and_shp_jsonl_train(make_cfg, tmp_path):
    tldr = [{"info": {"id": str(i), "post": p, "title": p[:20], "subreddit": "test"},
             "summaries": [{"text": bad}, {"text": good}], "choice": 1, "worker": "w"}
            for i, (p, good, bad) in enumerate(_pairs(120))]
    metrics = _train(make_cfg, _write_jsonl(tmp_path / "comparisons.jsonl", tldr), "tldr")
    assert metrics["trainer/global_step"] == 4.0 and metrics["data/kept"] == 120.0
    shp = [{"post_id": str(i), "history": p, "human_ref_A": bad, "human_ref_B": good, "labels": 0, "score_A": 1,
            "score_B": 9} for i, (p, good, bad) in enumerate(_pairs(120))]
    metrics = _train(make_cfg, _write_jsonl(tmp_path / "shp.jsonl", shp), "shp")
    assert metrics["trainer/global_step"] == 4.0 and metrics["data/kept"] == 120.0


def test_ultrafeedback_dataset_uses_its_own_splits(make_cfg, tmp_path):
    datasets = pytest.importorskip("datasets")

    def rows(n, offset):
        for prompt, good, bad in list(_pairs(n + offset))[offset:]:
            user = {"role": "user", "content": prompt}
            yield {"prompt": prompt, "chosen": [user, {"role": "assistant", "content": good}],
                   "rejected": [user, {"role": "assistant", "content": bad}], "score_chosen": 9.0,
                   "score_rejected": 2.0}

    directory = tmp_path / "ultrafeedback_binarized"
    datasets.DatasetDict({"train_prefs": datasets.Dataset.from_list(list(rows(100, 0))),
                          "test_prefs": datasets.Dataset.from_list(list(rows(30, 100))),
                          "train_sft": datasets.Dataset.from_list([{"x": 1}])}).save_to_disk(str(directory))
    metrics = _train(make_cfg, directory, "ultrafeedback", "data.source.kind=hf")
    # test is the dataset's test_prefs (all 30); val is cut from train_prefs by prompt hash
    assert metrics["data/test/kept"] == 30.0
    assert metrics["data/train/kept"] + metrics["data/val/kept"] == 100.0 and metrics["data/val/kept"] > 0
    mapped = _train(make_cfg, directory, "ultrafeedback", "data.source.kind=hf",
                    "data.source.split_map={train: train_prefs, val: test_prefs, test: test_prefs}")
    assert mapped["data/train/kept"] == 100.0 and mapped["data/val/kept"] == 30.0
    with pytest.raises(DataError, match=r"has no split test_gen; its splits are train_prefs, test_prefs, train_sft"):
        _train(make_cfg, directory, "ultrafeedback", "data.source.kind=hf",
               "data.source.split_map={train: train_prefs, test: test_gen}")


def test_a_format_that_does_not_fit_the_objective_is_a_config_error(make_cfg, tmp_path):
    from rlhf.config import validate_config
    from rlhf.errors import ConfigError

    cfg = make_cfg(*RUN, "data.source.path=x.jsonl", "data.source.format=hh", "method.objective=rating", fast=False)
    with pytest.raises(ConfigError, match=r"data.source.format=hh does not fit data.objective=rating"):
        validate_config(cfg)
