"""``rlhf-pipeline`` on tiny settings: MLM -> reward -> PWP -> PPO chained through exports; an interrupted stage
resumes, completed stages are skipped, a changed stage re-runs; then every notebook executes on those run dirs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "all:trainer.enable_model_summary=false",  # the default logger (W&B offline): notebooks read metrics_history.jsonl
    "mlm:data.source.max_documents=300", "mlm:model.tokenizer.vocab_size=1024", "mlm:model.hidden_size=64",
    "mlm:model.intermediate_size=128", "mlm:model.num_heads=2", "mlm:data.block_size=32",
    "mlm:trainer.val_check_interval=5", "mlm:trainer.limit_val_batches=4", "mlm:trainer.limit_test_batches=4",
    "reward:trainer.max_steps=10", "reward:trainer.val_check_interval=5", "reward:data.source.pairs_per_article=1",
    "pwp:data.source.max_documents=300", "pwp:trainer.max_steps=10", "pwp:trainer.val_check_interval=5",
    "pwp:method.evaluation.num_samples=8", "pwp:method.evaluation.num_prompts=8", "pwp:trainer.limit_val_batches=2",
    "pwp:trainer.limit_test_batches=2",
    "ppo:trainer.max_steps=3", "ppo:trainer.val_check_interval=3", "ppo:data.loader.batch_size=8",
    "ppo:data.loader.eval_batch_size=8", "ppo:method.num_minibatches=2", "ppo:trainer.limit_val_batches=1",
    "ppo:trainer.limit_test_batches=1",
]


def _pipeline(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLHF_CACHE_DIR": str(out.parent / "cache"), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "rlhf.pipeline", f"out_dir={out}", *TINY, *args],
                          capture_output=True, text=True, timeout=900, cwd=str(out.parent), env=env)


def _statuses(out: Path) -> dict[str, str]:
    return {row["stage"]: row["status"] for row in json.loads((out / "pipeline_summary.json").read_text())}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "out"
    # an MLM stage that stopped after 10 steps, before it was marked complete (as if killed)
    first = _pipeline(out, "only=[mlm]", "mlm:trainer.max_steps=10")
    assert first.returncode == 0, first.stderr[-3000:]
    (out / "mlm" / "stage_done.json").unlink()
    full = _pipeline(out, "mlm:trainer.max_steps=20")
    return out, full


@pytest.mark.slow
def test_pipeline_chains_the_four_methods_through_their_exports(pipeline_run):
    out, full = pipeline_run
    assert full.returncode == 0, full.stderr[-3000:]
    assert _statuses(out) == {"mlm": "resumed", "reward": "ran", "pwp": "ran", "ppo": "ran"}
    assert json.loads((out / "mlm" / "metrics.json").read_text())["trainer/global_step"] == 20.0  # resumed at 10
    config = {stage: (out / stage / ".hydra" / "overrides.yaml").read_text() for stage in ("reward", "pwp", "ppo")}
    assert f"model.name_or_path={out}/mlm/export" in config["reward"]
    assert f"data.scores.scorer.path={out}/reward/export" in config["pwp"]
    assert f"model.name_or_path={out}/pwp/export" in config["ppo"]
    assert f"method.reward.path={out}/reward/export" in config["ppo"]
    for stage in ("mlm", "reward", "pwp", "ppo"):
        assert (out / stage / "export" / "config.json").exists()
    table = full.stdout[full.stdout.index("Pipeline "):]
    for shown in ("test perplexity", "gold agreement", "held-out LM loss", "held-out gold", "KL"):  # each stage's report
        assert shown in table, (shown, table)
    assert " -> " in table  # before -> after from evaluate_at_start
    assert "[pipeline]   rlhf-train " in full.stdout and " experiment=mlm_tiny" in full.stdout  # runnable alone
    assert all((out / stage / "metrics_history.jsonl").exists() and (out / stage / "wandb").is_dir()
               for stage in ("mlm", "reward", "pwp", "ppo"))


@pytest.mark.slow
def test_pipeline_rerun_skips_completed_stages_and_reruns_changed_ones(pipeline_run):
    out, full = pipeline_run
    assert full.returncode == 0
    again = _pipeline(out, "mlm:trainer.max_steps=20")
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(_statuses(out).values()) == {"skipped"}
    changed = _pipeline(out, "mlm:trainer.max_steps=20", "ppo:method.lr=5e-5")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert _statuses(out) == {"mlm": "skipped", "reward": "skipped", "pwp": "skipped", "ppo": "ran"}
    assert "ppo: runs again because its overrides changed (method.lr=5e-5)" in changed.stdout
    assert len(list(out.glob("ppo.replaced-*"))) == 1  # the previous run dir is kept


def test_pipeline_config_errors_name_the_stage(tmp_path):
    from hydra import compose, initialize_config_dir

    from rlhf.errors import PipelineError
    from rlhf.pipeline import plan, split_stage_args
    from rlhf.train import CONFIG_DIR

    rest, routed = split_stage_args(["out_dir=x", "ppo:trainer.max_steps=3", "all:logger=csv", "hydra.run.dir=y"])
    assert rest == ["out_dir=x", "hydra.run.dir=y"] and routed == {"ppo": ["trainer.max_steps=3"],
                                                                  "all": ["logger=csv"]}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("pipeline", overrides=[f"out_dir={tmp_path}"])
        steps = plan(cfg, routed)
        assert [s["name"] for s in steps] == ["mlm", "reward", "pwp", "ppo"]
        assert steps[3]["overrides"][-2:] == ["trainer.max_steps=3", "seed=42"]
        assert "logger=csv" in steps[0]["overrides"]
        with pytest.raises(PipelineError, match="rmm:... names no stage; stages: mlm, reward, pwp, ppo"):
            plan(cfg, {"rmm": ["a=1"]})
        bad = compose("pipeline", overrides=[f"out_dir={tmp_path}", "stages.reward.needs=[ppo]"])
        with pytest.raises(PipelineError, match="stages.reward.needs: 'ppo' is not a stage that runs before"):
            plan(bad)


@pytest.mark.slow
def test_notebooks_execute_on_the_pipeline_runs(pipeline_run, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out, full = pipeline_run
    assert full.returncode == 0
    monkeypatch.setenv("RLHF_RUNS", str(out))
    monkeypatch.setenv("RLHF_FIGURES", str(tmp_path / "figures"))
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert {n.stem for n in notebooks} >= {"mlm_loss_curves", "reward_calibration", "ppo_reward_kl", "pwp_frontier"}
    for path in notebooks:
        book = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        text = "".join(o.get("text", "") for o in outputs)
        assert "run(s) under" in text or "saved" in text, (path.name, text[-2000:])
        assert any("image/png" in o.get("data", {}) for o in outputs), path.name  # figures shown inline
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == ["mlm_loss_curves.png", "ppo_reward_kl.png", "pwp_frontier.png", "reward_calibration.png"]
    assert all((tmp_path / "figures" / f).stat().st_size > 10_000 for f in figures)  # plots with content



def test_the_closing_table_shows_what_each_stage_reports(tmp_path):
    from rlhf.pipeline import format_table, stage_report

    (tmp_path / "ppo").mkdir()
    (tmp_path / "ppo" / "metrics.json").write_text(json.dumps({"start/test/gold": 0.1, "test/gold": 0.62,
                                                               "test/kl": 12.34}))
    step = {"dir": tmp_path / "ppo", "report": [
        {"label": "held-out gold", "key": "test/gold", "start": "start/test/gold"}, {"label": "KL", "key": "test/kl"},
        {"label": "absent", "key": "test/nothing"}]}
    report = stage_report(step)
    assert [r["label"] for r in report] == ["held-out gold", "KL"]
    table = format_table([{"stage": "ppo", "status": "ran", "seconds": 81.2, "run_dir": str(tmp_path / "ppo"),
                           "report": report}], tmp_path)
    assert "ppo      ran        81 s  held-out gold 0.100 -> 0.620; KL 12.340" in table


EVAL_TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
             "model.tokenizer.vocab_size=512", "logger=csv", "callbacks.progress_bar=null", "trainer.max_steps=4",
             "trainer.val_check_interval=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
             "evaluate_at_start=true"]
EVAL_METHODS = {
    "mlm": (["data.source.max_documents=120", "data.block_size=32", "data.loader.batch_size=8"], "test/loss"),
    "reward": (["experiment=reward_tiny", "data.source.max_articles=60", "data.max_length=48",
                "data.loader.batch_size=8"], "test/accuracy"),
    "pwp": (["experiment=pwp_tiny", "data.source.max_documents=40", "data.block_size=32", "data.loader.batch_size=8",
             "method.evaluation.num_samples=4", "method.evaluation.num_prompts=4"], "test/lm_loss"),
    "ppo": (["experiment=ppo_tiny", "data.source.max_documents=60", "data.loader.batch_size=4",
             "method.max_new_tokens=4", "method.num_minibatches=2"], "test/gold"),
}


@pytest.mark.parametrize("method", list(EVAL_METHODS))
def test_every_method_evaluates_at_start_then_trains_and_validates(make_cfg, method):
    """The pipeline's before -> after: a test pass before fit must leave the module able to validate during fit
    (PPO's metrics, built under inference mode by the test, could not be updated afterwards)."""
    from rlhf.train import run

    overrides, key = EVAL_METHODS[method]
    metrics = run(make_cfg(*overrides, *EVAL_TINY, fast=False))
    assert f"start/{key}" in metrics and key in metrics and metrics["trainer/global_step"] == 4.0
    assert f"val/{key.split('/', 1)[1]}" in metrics or method == "reward"


@pytest.mark.parametrize(("recipe", "stages"), [("main", ["mlm", "reward", "pwp", "ppo"]),
                                                ("classic", ["lm", "sft", "reward", "ppo"]),
                                                ("dpo", ["lm", "sft", "dpo"])])
def test_every_recipe_plans_and_every_stage_config_validates(tmp_path, recipe, stages):
    """rlhf-pipeline recipe=<name>: the stages in order, each consuming the exports it needs; every stage's rlhf-train
    config composes and validates (what the pipeline checks before the first stage runs)."""
    from hydra import compose, initialize_config_dir

    from rlhf.pipeline import check_stages, plan
    from rlhf.train import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("pipeline", overrides=[f"out_dir={tmp_path}", f"recipe={recipe}"])
        steps = plan(cfg, {})
    assert [s["name"] for s in steps] == stages
    for step in steps[1:]:
        assert step["needs"] and all(f"{tmp_path}/{need}/export" in " ".join(step["overrides"])
                                     for need in step["needs"]), step
    check_stages(steps)


@pytest.mark.slow
def test_the_dpo_recipe_runs_lm_sft_dpo_through_their_exports(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "RLHF_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    tiny = ["recipe=dpo", "all:logger=csv", "all:trainer.enable_model_summary=false", "all:model.hidden_size=32",
            "all:model.num_layers=1", "all:model.num_heads=2", "all:model.intermediate_size=64",
            "all:trainer.limit_val_batches=2", "all:trainer.limit_test_batches=2", "lm:trainer.max_steps=10",
            "lm:trainer.val_check_interval=10", "lm:data.source.max_documents=200", "lm:model.tokenizer.vocab_size=512",
            "sft:trainer.max_steps=6", "sft:trainer.val_check_interval=6", "sft:data.source.max_articles=60",
            "dpo:trainer.max_steps=6", "dpo:trainer.val_check_interval=6", "dpo:data.source.max_articles=60",
            "dpo:method.evaluation.num_samples=4", "dpo:method.evaluation.num_prompts=4",
            "dpo:method.evaluation.max_new_tokens=6"]
    done = subprocess.run([sys.executable, "-m", "rlhf.pipeline", f"out_dir={out}", *tiny], capture_output=True,
                          text=True, timeout=900, cwd=str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _statuses(out) == {"lm": "ran", "sft": "ran", "dpo": "ran"}
    assert f"model.name_or_path={out}/sft/export" in (out / "dpo" / ".hydra" / "overrides.yaml").read_text()
    table = done.stdout[done.stdout.index("Pipeline "):]
    assert "response loss" in table and "reward accuracy" in table and "held-out gold of samples" in table
