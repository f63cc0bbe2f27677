"""Bad input through the entry point (``rlhf.train.run``, what ``rlhf-train`` calls): each case is a user error
(ConfigError, DataError, ModelError, ResumeError; the CLI prints its message, no traceback) naming the file, row or
key and the fix, or a counted drop. Reader-level cases live in test_data.py, reward-data cases in test_reward.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlhf.config import validate_config
from rlhf.errors import USER_ERRORS, ConfigError, DataError, ModelError, ResumeError
from rlhf.train import run

SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2", "logger=csv"]  # no W&B run left open by a failing run()


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _texts(n: int = 60) -> list[dict]:
    return [{"text": f"Document {i} says the market rose while the council met to discuss budgets. " * 3}
            for i in range(n)]


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    """One finished MLM run (checkpoint + export) that the resume and mismatch cases start from."""
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import FAST, compose_config

    cfg = compose_config(tmp_path_factory.mktemp("mlm_run"), [*FAST, *SHORT])
    run(cfg)
    GlobalHydra.instance().clear()
    return Path(cfg.paths.output_dir)


# ---- files and rows -----------------------------------------------------------------------------------------------
def test_missing_corpus_file_names_the_path(make_cfg, tmp_path):
    cfg = make_cfg("data=text_file_mlm", f"data.source.path={tmp_path}/nope.jsonl", *SHORT)
    with pytest.raises(DataError, match=r"nope.jsonl"):
        run(cfg)


def test_broken_jsonl_line_names_file_and_line_through_the_entry_point(make_cfg, tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [*_texts(5), '{"text": "unterminated', *_texts(5)])
    with pytest.raises(DataError, match=r"c.jsonl.*line 6"):
        run(make_cfg("data=text_file_mlm", f"data.source.path={path}", *SHORT))


def test_wrong_column_lists_the_columns_present(make_cfg, tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"body": "x"}] * 5)
    with pytest.raises(DataError, match=r"text.*body"):
        run(make_cfg("data=text_file_mlm", f"data.source.path={path}", *SHORT))


def test_empty_rows_are_dropped_and_counted(make_cfg, tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [*_texts(60), {"text": "  "}, {"text": ""}])
    metrics = run(make_cfg("data=text_file_mlm", f"data.source.path={path}", "model.tokenizer.vocab_size=512",
                           *SHORT))
    assert metrics["data/dropped_empty"] == 2.0


def test_pairs_file_missing_field_names_the_row(make_cfg, tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"} for i in range(40)]
    rows[7] = {"prompt": "p7", "chosen": "only one"}
    path = _jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match=r"pairs.jsonl.*row 8.*rejected"):
        run(make_cfg("experiment=reward_tiny", "data=feedback_file", f"data.source.path={path}", *SHORT, fast=False))


def test_non_finite_rating_names_the_row(make_cfg, tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"answer {i}", "rating": float(i % 5)} for i in range(40)]
    rows[3]["rating"] = float("nan")
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json writes the NaN as NaN
    with pytest.raises(DataError, match=r"ratings.jsonl.*row 4.*rating"):
        run(make_cfg("experiment=reward_tiny", "method.objective=rating", "data=feedback_file",
                     f"data.source.path={path}", "data.strict=true", *SHORT, fast=False))


def test_filtering_that_leaves_nothing_is_an_error_with_the_threshold(make_cfg):
    cfg = make_cfg("experiment=pwp_tiny", "method.objective=filtering", "data.source.max_documents=60",
                   "data.scores.filter_threshold=2.0", *SHORT, fast=False)  # VADER compound is <= 1: all filtered
    with pytest.raises(DataError, match=r"filter"):
        run(cfg)


def test_ppo_prompt_file_with_the_wrong_column(make_cfg, tmp_path):
    path = _jsonl(tmp_path / "prompts.jsonl", [{"question": f"q{i}"} for i in range(30)])
    cfg = make_cfg("experiment=ppo_tiny", "data.source.kind=file", f"data.source.path={path}", *SHORT, fast=False)
    with pytest.raises(DataError, match=r"prompts.jsonl.*question"):
        run(cfg)


# ---- models, tokenizers and checkpoints ---------------------------------------------------------------------------
def test_missing_pretrained_model_directory_names_it(make_cfg, tmp_path):
    cfg = make_cfg("model=pretrained", f"model.name_or_path={tmp_path}/no_model", *SHORT, fast=False)
    with pytest.raises(USER_ERRORS, match=r"no_model"):
        run(cfg)


def test_a_masked_lm_run_refuses_a_causal_lm_export(make_cfg, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from rlhf.data.tokenizer import build_tokenizer

    tok = build_tokenizer({"kind": "train", "algorithm": "bpe", "vocab_size": 300},
                          [t["text"] for t in _texts(20)], str(tmp_path / "cache"))
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path / "gpt")
    tok.save_pretrained(tmp_path / "gpt")
    assert isinstance(tok, PreTrainedTokenizerFast)
    cfg = make_cfg("model=pretrained", f"model.name_or_path={tmp_path}/gpt", *SHORT, fast=False)
    with pytest.raises(ModelError, match=r"gpt.*not a MaskedLM model; method=mlm needs an encoder"):
        run(cfg)


def test_a_checkpoint_of_another_method_is_refused(make_cfg, mlm_run):
    cfg = make_cfg("experiment=reward_tiny", f"ckpt_path={mlm_run}", *SHORT, fast=False)
    with pytest.raises(ResumeError, match=r"was written by method=mlm \(MaskedLMModule\); this run is method=reward"):
        run(cfg)


def test_a_checkpoint_of_another_model_size_names_the_parameter(make_cfg, mlm_run):
    cfg = make_cfg("model.hidden_size=32", "model.intermediate_size=64", f"ckpt_path={mlm_run}", *SHORT,
                   subdir="other")
    with pytest.raises(ResumeError, match=r"has shape .* in the checkpoint but .* in this run: the model config"):
        run(cfg)


def test_a_file_that_is_not_a_checkpoint_is_refused(make_cfg, tmp_path):
    junk = tmp_path / "model.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ResumeError, match=r"model.ckpt is not readable"):
        run(make_cfg(f"ckpt_path={junk}", *SHORT))
    torch.save({"weights": torch.ones(2)}, junk)
    with pytest.raises(ResumeError, match=r"not a Lightning checkpoint"):
        run(make_cfg(f"ckpt_path={junk}", *SHORT))


# ---- cross-field config checks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "message"), [
    (["strategy=fsdp", "trainer.accelerator=cpu"], "strategy=fsdp needs GPUs"),
    (["strategy=deepspeed", "trainer.accelerator=cpu"], "strategy=deepspeed needs GPUs"),
    (["experiment=ppo_tiny", "strategy=fsdp", "trainer.accelerator=gpu"], "method=ppo does not support strategy=fsdp"),
    (["experiment=ppo_tiny", "strategy=deepspeed_stage_3", "trainer.accelerator=gpu"],
     "does not support strategy=deepspeed \\(any stage\\)"),
    (["experiment=ppo_tiny", "strategy=deepspeed", "trainer.accelerator=gpu"], "PPO steps its optimizer itself"),
    (["experiment=ppo_tiny", "data.loader.batch_size=4", "method.num_minibatches=8"],
     "method.num_minibatches=8 must divide the rollout batch of 4"),
])
def test_cross_field_checks_run_before_training(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(make_cfg(*overrides, fast=False))


# ---- run directories ----------------------------------------------------------------------------------------------
def test_a_second_run_in_a_live_run_directory_is_refused_and_a_stale_lock_taken_over(make_cfg, caplog):
    from rlhf.errors import RunDirError
    from rlhf.utils.run import RunDirLock

    cfg = make_cfg(*SHORT)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True)
    with RunDirLock(run_dir):  # a live run holds the directory (another open file: flock conflicts as across processes)
        with pytest.raises(RunDirError, match=rf"{run_dir} is in use by a live run \(pid {os.getpid()} on .*, started"):
            run(cfg)
        assert not (run_dir / "checkpoints").exists()  # refused before anything was written
    (run_dir / ".run.lock").write_text("pid 999999 on node-7, started 2026-11-30 01:00:00\n")  # killed: no flock
    with caplog.at_level("WARNING", logger="rlhf"):
        metrics = run(cfg)
    assert "taking over the lock of a run that is no longer running (pid 999999 on node-7" in caplog.text
    assert metrics["trainer/global_step"] == 2.0
    assert (run_dir / ".run.lock").read_text() == ""  # released at the end


def test_an_unwritable_run_directory_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for command, key in ((["rlhf.train", "logger=csv"], "hydra.run.dir"), (["rlhf.pipeline"], "out_dir")):
        where = f"{key}={tmp_path / 'a_file' / 'run'}"
        out = subprocess.run([sys.executable, "-m", *command, where], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)
        assert out.returncode == 1
        assert f"Error: cannot write the run directory {tmp_path / 'a_file' / 'run'} (Not a directory); set {key}" \
            in out.stderr
        assert "Traceback" not in out.stderr


def test_a_masked_lm_export_given_as_a_ppo_policy_is_named_as_such(make_cfg, mlm_run):
    cfg = make_cfg("experiment=ppo_tiny", "model=pretrained", f"model.name_or_path={mlm_run}/export", *SHORT,
                   fast=False)
    with pytest.raises(ModelError, match=r"export' is a masked LM \(RoFormerForMaskedLM\); PPO and PWP need a causal "
                                         r"LM"):
        run(cfg)


def test_a_missing_local_model_directory_says_no_such_directory(make_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("./models/nope", f"{tmp_path}/a/b/c"):
        cfg = make_cfg("model=pretrained", f"model.name_or_path={name}", *SHORT, fast=False)
        with pytest.raises(USER_ERRORS, match=r"name_or_path='.*': no such directory \(.*; relative paths are taken "
                                              r"from .*\)\. Pass a directory written by save_pretrained"):
            run(cfg)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_file_with_a_utf8_byte_order_mark_trains(make_cfg, tmp_path, suffix):
    """Excel and Windows editors write a BOM: it was refused in jsonl and glued to the first CSV column's name."""
    rows = [{"prompt": f"p{i}", "chosen": f"a fine and lovely answer {i}", "rejected": f"a grim answer {i}"}
            for i in range(60)]
    if suffix == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        text = "prompt,chosen,rejected\n" + "".join(f"{r['prompt']},{r['chosen']},{r['rejected']}\n" for r in rows)
    path = tmp_path / f"prefs.{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    metrics = run(make_cfg("experiment=reward_tiny", "data=feedback_file", f"data.source.path={path}",
                           "data.split.val_fraction=0.2", "data.split.test_fraction=0.2", "model.hidden_size=32",
                           "model.num_layers=1", "model.intermediate_size=64", "model.tokenizer.vocab_size=256",
                           "data.loader.batch_size=8", *SHORT, fast=False))
    assert metrics["data/kept"] == 60.0 and "test/accuracy" in metrics


# ---- the same mistakes through the commands a user types ------------------------------------------------------------
CLI_CASES = {  # name: (command after `python -m`, text the one error line must contain)
    "typo in a key": (["rlhf.train", "trainer.max_step=5"], "Did you mean: max_steps"),
    "value out of range": (["rlhf.train", "data.mask_prob=1.5"], "data.mask_prob=1.5 must be > 0.0 and <= 1.0"),
    "missing corpus": (["rlhf.train", "data=text_file_mlm", "data.source.path=nope.jsonl"], "nope.jsonl: file not found"),
    "pairs file with a missing field": (["rlhf.train", "experiment=reward_tiny", "data=feedback_file",
                                         "data.source.path=bad_pairs.jsonl"], "bad_pairs.jsonl, row 2: missing field"),
    "rating off the scale": (["rlhf.train", "experiment=reward_tiny", "method.objective=rating", "data=feedback_file",
                              "data.source.path=ratings.jsonl", "data.rating_range=[1,3]"],
                             "ratings.jsonl, row 1: rating 9 is outside data.rating_range"),
    "missing model directory": (["rlhf.train", "model=pretrained", "model.name_or_path=./no/such/model"],
                                "no such directory"),
    "resume from a non-checkpoint": (["rlhf.train", "ckpt_path=junk.ckpt"], "junk.ckpt is not readable"),
    "late pipeline stage typo": (["rlhf.pipeline", "out_dir=pipe", "ppo:method.kl_coeff=0.1"], "Did you mean: kl_coef"),
    "unwritable run dir": (["rlhf.train", "hydra.run.dir=a_file/run"], "cannot write the run directory"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_user_mistakes_through_the_commands_end_in_one_error_line(tmp_path, case):
    command, expected = CLI_CASES[case]
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "junk.ckpt").write_bytes(b"torn")
    _jsonl(tmp_path / "bad_pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}])
    _jsonl(tmp_path / "ratings.jsonl", [{"prompt": "p", "response": "r", "rating": 9}])
    env = {**os.environ, "WANDB_MODE": "offline", "RLHF_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", *command, "logger=csv"] if command[0] == "rlhf.train" else
                         [sys.executable, "-m", *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    assert expected in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr  # (a composition error keeps Hydra's one-line pointer to HYDRA_FULL_ERROR)


def test_only_rank_zero_takes_the_run_directory_lock(tmp_path, monkeypatch):
    from rlhf.utils.run import RANK_VARIABLES, RunDirLock

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    with RunDirLock(tmp_path) as lock:
        assert lock.handle is not None  # rank 0 of a one-task SLURM job locks
    for name, value in (("LOCAL_RANK", "1"), ("NODE_RANK", "2"), ("RANK", "3"), ("SLURM_PROCID", "1")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with RunDirLock(tmp_path) as lock:
                assert lock.handle is None, name  # DDP workers, other nodes and tasks share rank 0's run dir
