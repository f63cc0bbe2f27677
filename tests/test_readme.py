"""The README stays true: CI runs its test command verbatim, and every `rlhf-train` line in it composes and validates."""

import re
import shlex
from pathlib import Path

import pytest

from rlhf.config import validate_config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = next(line for block in _bash_blocks() for line in block.splitlines() if "pytest" in line)
    setup, _, run = test_command.partition(" && . .venv/bin/activate && ")
    assert setup == "python3 -m venv .venv"
    ci = (REPO / ".ci" / "run").read_text()
    assert run in ci.splitlines(), f"'.ci/run' must contain the README's test command: {run}"


def test_readme_install_command_pins_cpu_torch_through_the_constraints():
    main_command = next(line for block in _bash_blocks() for line in block.splitlines()
                        if line.endswith("rlhf-pipeline"))
    assert "-c .ci/constraints.txt" in main_command
    assert "torch==2.13.0" in (REPO / ".ci" / "constraints.txt").read_text().splitlines()


README_RUNS = [line.split("#")[0].strip() for block in _bash_blocks() for line in block.splitlines()
               if line.strip().startswith("rlhf-train")]


@pytest.mark.parametrize("command", README_RUNS)
def test_every_readme_rlhf_train_line_composes_and_validates(make_cfg, command):
    args = shlex.split(command)[1:]
    if "--cfg" in args or "--config-path" in args:
        return
    overrides = [a if "{" in a or "[" in a else a.split(",")[0] for a in args if a != "-m"]  # a sweep: check its first point
    cfg = make_cfg(*overrides, fast=False)
    validate_config(cfg)


PIPELINE_RUNS = [line.split("#")[0].strip() for block in _bash_blocks() for line in block.splitlines()
                 if line.strip().startswith("rlhf-pipeline") or line.strip().endswith("&& rlhf-pipeline")]


@pytest.mark.parametrize("command", PIPELINE_RUNS)
def test_every_readme_pipeline_line_plans_stages_that_compose_and_validate(make_cfg, command):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rlhf.pipeline import plan, split_stage_args
    from rlhf.train import CONFIG_DIR

    args = shlex.split(command.split("&&")[-1])[1:]
    rest, routed = split_stage_args(args)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        steps = plan(compose("pipeline", overrides=rest), routed)
    assert steps
    for step in steps:
        validate_config(make_cfg(*step["overrides"], fast=False, subdir=step["name"]))
