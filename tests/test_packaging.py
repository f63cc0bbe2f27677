"""Packaging as a user meets it: the wheel holds the whole Hydra config tree, a non-editable install runs from any
directory (``python -m rlhf.train`` and the ``rlhf-train`` entry point), and a user's own config directory joins the
packaged groups through ``hydra.searchpath``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
               "TOKENIZERS_PARALLELISM": "false"}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the working tree, built offline from a clean copy (no stale build/ or egg-info in the repo)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "rlhf", src / "rlhf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "--wheel-dir", str(root / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode == 0, f"pip wheel failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    (built,) = (root / "dist").glob("rlhf-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed, not editable, into a directory of its own (used through PYTHONPATH)."""
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode == 0, f"pip install --target failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return target


def test_wheel_ships_every_config_file_and_the_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "rlhf" / "conf").rglob("*.yaml"))
    assert len(configs) > 40 and "rlhf/conf/train.yaml" in configs and "rlhf/conf/pipeline.yaml" in configs
    missing = [c for c in configs if c not in names]
    assert not missing, f"config files missing from {wheel.name}: {missing} (see [tool.setuptools.package-data])"
    assert {"rlhf/train.py", "rlhf/cli_help.py", "rlhf/pipeline.py"} <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "rlhf-train = rlhf.train:main" in text and "rlhf-pipeline = rlhf.pipeline:main" in text


def test_installed_wheel_runs_from_another_directory(installed, tmp_path):  # ~15 s: two processes
    """``python -m rlhf.train --cfg job`` and the ``rlhf-train`` entry point of the installed wheel (not the editable
    checkout) compose the packaged config from a directory that holds no config of its own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(PYTHONPATH=str(installed), RLHF_ROOT=str(elsewhere))  # only the installed copy on the path
    module = subprocess.run([sys.executable, "-m", "rlhf.train", "--cfg", "job"], capture_output=True, text=True,
                            cwd=elsewhere, env=env, timeout=300)
    assert module.returncode == 0, module.stderr[-3000:]
    assert "method:" in module.stdout and "_target_: rlhf.methods.mlm.MaskedLMModule" in module.stdout

    probe = textwrap.dedent("""
        import json, sys
        from importlib.metadata import entry_points
        import rlhf
        from rlhf.config import CONFIG_DIR
        (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "rlhf-train"]
        main = ep.load()
        print(json.dumps({"rlhf": rlhf.__file__, "config_dir": str(CONFIG_DIR), "entry_point": ep.value,
                          "main_file": sys.modules[main.__module__].__file__}))
        sys.argv = ["rlhf-train", "method=ppo", "--help"]
        main()
        sys.argv = ["rlhf-train", "experiment=ppo_tiny", "--cfg", "job"]
        main()
    """)
    entry = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=elsewhere, env=env,
                           timeout=300)
    assert entry.returncode == 0, entry.stderr[-3000:]
    where = json.loads(entry.stdout.splitlines()[0])
    for key in ("rlhf", "config_dir", "main_file"):  # the installed copy, not the repository's editable install
        assert Path(where[key]).resolve().is_relative_to(installed.resolve()), (key, where[key])
    assert where["entry_point"] == "rlhf.train:main"
    assert "method.kl_coef=0.05" in entry.stdout  # the help page, from the installed rlhf/cli_help.py
    assert "_target_: rlhf.methods.ppo.PPOModule" in entry.stdout  # the composed config of experiment=ppo_tiny
    assert not list(elsewhere.iterdir()), "--cfg job and --help must not write anything"


def _user_conf(root: Path) -> Path:
    """A user's config directory: an experiment overlay and a model option that extends a packaged one."""
    (root / "experiment").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "experiment" / "my_ppo.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        defaults:
          - override /method: ppo
          - override /model: tiny_gpt2
          - override /data: prompts
        experiment_name: my_ppo
        method:
          kl_coef: 0.123
        trainer:
          max_steps: 7
    """))
    (root / "model" / "wide_roformer.yaml").write_text("defaults:\n  - tiny_roformer\n  - _self_\n\nhidden_size: 96\n")
    return root


def test_user_config_directory_joins_the_packaged_groups_through_hydra_searchpath(tmp_path):
    user = _user_conf(tmp_path / "my_conf")
    run = tmp_path / "run"
    run.mkdir()

    out = subprocess.run([sys.executable, "-m", "rlhf.train", f"hydra.searchpath=[file://{user}]", "experiment=my_ppo",
                          "model=wide_roformer", "--cfg", "job"], capture_output=True, text=True, cwd=run, timeout=300,
                         env=_env(RLHF_ROOT=str(run)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "_target_: rlhf.methods.ppo.PPOModule" in out.stdout  # the user's overlay switched the method...
    assert "kl_coef: 0.123" in out.stdout and "max_steps: 7" in out.stdout and "experiment_name: my_ppo" in out.stdout
    assert "hidden_size: 96" in out.stdout and "arch: roformer" in out.stdout  # ...and its model extends tiny_roformer
