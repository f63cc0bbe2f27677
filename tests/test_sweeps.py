"""Sweeps and reproducibility as users run them: Hydra multirun grids where one job fails, the Optuna sweeper, the
submitit launcher (locally), the SLURM launcher config, the W&B sweep template, and re-running a saved config."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlhf.config import key_hints, validate_config
from tests.test_distributed_and_cli import _train

REPO = Path(__file__).resolve().parents[1]
SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2"]


def _sweep_dir(tmp_path: Path) -> Path:
    (sweep,) = tmp_path.glob("logs/mlm/multiruns/*/*")
    return sweep


def test_a_failed_job_is_recorded_and_the_other_jobs_of_the_sweep_finish(tmp_path):
    out = _train(tmp_path, "-m", "method.lr=1e-3,-1,2e-3", *SHORT)
    assert out.returncode == 1  # the sweep reports the failure...
    sweep = _sweep_dir(tmp_path)
    assert (sweep / "0" / "metrics.json").exists() and (sweep / "2" / "metrics.json").exists()  # ...after all jobs
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert (summary["completed"], summary["failed"]) == (2, 1)
    failed = summary["jobs"][1]
    assert failed["status"] == "failed" and "method.lr=-1" in failed["overrides"]
    assert "method.lr=-1.0 must be > 0.0" in failed["error"]
    done = summary["jobs"][2]
    assert done["metric"] == "val/loss"
    assert done["value"] == pytest.approx(json.loads((sweep / "2" / "metrics.json").read_text())["val/loss"])
    assert "1  failed" in out.stdout and "method.lr=-1" in out.stdout  # the table printed at the end


def test_optuna_sweeper_optimises_the_methods_metric(tmp_path):
    out = _train(tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.sampler.n_startup_trials=2", *SHORT)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((_sweep_dir(tmp_path) / "sweep_summary.json").read_text())
    values = [job["value"] for job in summary["jobs"]]
    assert len(values) == 3 and len({job["run_dir"] for job in summary["jobs"]}) == 3
    assert "Directions: ['minimize']" in out.stdout  # from method.metric_mode=min
    best = float(out.stdout.split("Best value: ")[1].split()[0])
    assert best == pytest.approx(min(values))  # the sweeper received each run's val/loss
    lrs = {o for job in summary["jobs"] for o in job["overrides"] if o.startswith("method.lr=")}
    assert len(lrs) == 3


def test_optuna_sqlite_storage_works_with_the_installed_sqlalchemy(tmp_path):
    """The fast guard of the test below: optuna 2.x (pinned by hydra-optuna-sweeper) with the installed SQLAlchemy
    and alembic creates, fills and reloads a sqlite study (SQLAlchemy 2 fails here with a bare AssertionError)."""
    import alembic
    import optuna
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'guard.db'}"
    try:
        study = optuna.create_study(storage=storage, study_name="guard")
    except AssertionError as err:
        pytest.fail(f"optuna {optuna.__version__} cannot use sqlite storage with SQLAlchemy {sqlalchemy.__version__} / "
                    f"alembic {alembic.__version__} ({err!r}): install with -c .ci/constraints.txt (sqlalchemy<2)")
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    reloaded = optuna.load_study(study_name="guard", storage=storage)
    assert [t.state.name for t in reloaded.trials] == ["COMPLETE", "COMPLETE"]


@pytest.mark.slow
def test_optuna_study_in_sqlite_storage_records_every_trial_and_resumes(tmp_path):
    """hydra.sweeper.storage=sqlite:///... (rlhf/conf/hparams_search/optuna.yaml): optuna 2.x fails on SQLAlchemy 2
    before the first trial (a bare AssertionError), hence the sqlalchemy<2 pin; a second launch with the same
    study_name continues the study."""
    db = tmp_path / "study.db"
    storage = [f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=tiny",
               "hydra.sweeper.sampler.n_startup_trials=2"]
    first = _train(tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *storage, *SHORT)
    assert first.returncode == 0, first.stderr[-3000:]
    (sweep,) = tmp_path.glob("logs/mlm/multiruns/*/*")
    values = [job["value"] for job in json.loads((sweep / "sweep_summary.json").read_text())["jobs"]]
    second = _train(tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", *storage, *SHORT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Using an existing study with name 'tiny'" in second.stderr + second.stdout

    with sqlite3.connect(db) as con:  # read with the standard library: what is on disk, not optuna's cache
        assert con.execute("SELECT study_name FROM studies").fetchall() == [("tiny",)]
        trials = con.execute("SELECT t.number, t.state, v.value FROM trials t JOIN trial_values v "
                             "ON v.trial_id = t.trial_id ORDER BY t.number").fetchall()
        lrs = con.execute("SELECT COUNT(DISTINCT t.trial_id) FROM trial_params p JOIN trials t "
                          "ON p.trial_id = t.trial_id WHERE p.param_name = 'method.lr'").fetchone()[0]
    assert [(n, state) for n, state, _ in trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert [v for _, _, v in trials[:2]] == pytest.approx(values)  # each run's val/loss, as the sweeper received it
    assert lrs == 3  # every trial sampled method.lr from the search space


@pytest.mark.slow
def test_submitit_launcher_runs_each_job_in_its_own_process(tmp_path):
    out = _train(tmp_path, "-m", "launcher=local", "seed=1,2", *SHORT)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = _sweep_dir(tmp_path)
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["completed"] == 2
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # submitit's per-job logs
    seeds = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in (0, 1)]
    assert seeds[0]["val/loss"] != seeds[1]["val/loss"]


def test_slurm_launcher_config_follows_trainer_devices_and_nodes(make_cfg):
    cfg = make_cfg("launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu" and launcher.max_num_timeout == 3


def test_missing_sweep_plugin_gives_an_install_hint(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins.") else real(name, *a))
    assert key_hints(["hparams_search=optuna"]) == [
        'hparams_search= needs a Hydra plugin that is not installed: pip install -e ".[sweeps]"']


def test_wandb_sweep_template_passes_valid_overrides(make_cfg):
    template = yaml.safe_load((REPO / "experiments" / "wandb_sweep" / "sweep.yaml").read_text())
    assert template["command"][-1] == "${args_no_hyphens}"  # Hydra needs key=value, not --key=value
    fixed = [arg for arg in template["command"] if "=" in arg and not arg.startswith("$")]
    sampled = []
    for name, spec in template["parameters"].items():
        value = spec["values"][-1] if "values" in spec else spec["min"]
        sampled.append(f"{name}={value}")
    assert key_hints(fixed + sampled) == []
    cfg = make_cfg(*fixed, *sampled, fast=False)
    validate_config(cfg)
    assert cfg.method.metric == template["metric"]["name"] and cfg.logger.wandb.mode == "online"


def test_rerunning_a_saved_config_reproduces_the_metrics(tmp_path):
    first = _train(tmp_path, "trainer.max_steps=4", "trainer.val_check_interval=2", f"hydra.run.dir={tmp_path}/a")
    assert first.returncode == 0, first.stderr[-3000:]
    saved = tmp_path / "a" / ".hydra"
    rerun = subprocess.run([sys.executable, "-m", "rlhf.train", "--config-path", str(saved), "--config-name", "config",
                            f"hydra.run.dir={tmp_path}/b"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    other_seed = subprocess.run([sys.executable, "-m", "rlhf.train", "--config-path", str(saved), "--config-name",
                                 "config", "seed=7", f"hydra.run.dir={tmp_path}/c"],
                                capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert other_seed.returncode == 0, other_seed.stderr[-3000:]
    a, b, c = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "abc")
    assert a == b  # same machine, same config: the same numbers, every metric
    assert a["test/loss"] != c["test/loss"]  # the seed changes init, data order and masks
    meta = json.loads((tmp_path / "b" / "run_metadata.json").read_text())
    assert meta["versions"]["torch"] and "git_commit" in meta

