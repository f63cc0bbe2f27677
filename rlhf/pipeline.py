"""``rlhf-pipeline``: MLM -> reward model -> preference-weighted pretraining -> PPO, each stage consuming the previous
stage's export (``rlhf/conf/pipeline.yaml``).

Every stage is an ordinary ``rlhf-train`` run in ``<out_dir>/<stage>`` (launched as a subprocess, so each gets a fresh
Hydra, W&B run and, under DDP, its own process group); the command of each stage is printed so it can be run alone.
A completed stage leaves ``<out_dir>/<stage>/stage_done.json`` (written atomically after the run exits cleanly and
its export exists) with the overrides it ran with and the completion ids of the stages it consumed. Re-running:

- a completed stage is skipped, unless its overrides changed or a stage it needs was re-run (then it is stale and runs
  again; its old run dir is kept under a new name);
- an interrupted stage (no marker) resumes from its own ``checkpoints/last.ckpt`` when it has one.

At the end (or when a stage fails) a table prints per stage: status, headline metric, time and run dir; the same is
written to ``<out_dir>/pipeline_summary.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from rlhf.config import CONFIG_DIR, register_configs, register_resolvers
from rlhf.errors import PipelineError
from rlhf.utils.run import resume_points, write_json

DONE = "stage_done.json"
register_configs()  # the stages' schemas, for check_stages
register_resolvers()


def split_stage_args(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``<stage>:key=value`` (one stage) and ``all:key=value`` (every stage) are ``rlhf-train`` overrides passed to
    stages; everything else overrides ``rlhf/conf/pipeline.yaml``."""
    rest, routed = [], {}
    for arg in argv:
        head, sep, tail = arg.partition(":")
        if sep and head.isidentifier() and "=" in tail and "=" not in head:
            routed.setdefault(head, []).append(tail)
        else:
            rest.append(arg)
    return rest, routed


def plan(cfg: DictConfig, routed: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The stages in order, each with its name, run dir, full override list and the stages it needs."""
    stages = OmegaConf.to_container(cfg.stages, resolve=True)
    names = list(stages)
    routed = defaultdict(list, routed or {})  # stage name (or "all") -> its overrides
    for name in routed:
        if name != "all" and name not in stages:
            raise PipelineError(f"{name}:... names no stage; stages: {', '.join(names)} (or all:key=value)")
    only = list(cfg.only or [])
    for name in [*only, *(cfg.rerun or [])]:
        if name not in stages:
            raise PipelineError(f"unknown stage {name!r} in only=/rerun=; stages: {', '.join(names)}")
    out_dir = Path(cfg.out_dir).resolve()
    steps = []
    for position, name in enumerate(names):
        stage = stages[name] or {}
        unknown = set(stage) - {"needs", "overrides", "extra", "report"}
        if unknown:
            raise PipelineError(f"stages.{name}: unknown key(s) {', '.join(sorted(unknown))}; use overrides "
                                f"(the stage's rlhf-train overrides), extra (more overrides), needs and report")
        needs = list(stage.get("needs") or [])
        for need in needs:
            if need not in names[:position]:
                raise PipelineError(f"stages.{name}.needs: {need!r} is not a stage that runs before {name!r} "
                                    f"(order: {', '.join(names)})")
        overrides = [*cfg.common, *routed["all"], *(stage.get("overrides") or []),
                     *(stage.get("extra") or []), *routed[name], f"seed={cfg.seed}"]
        steps.append({"name": name, "dir": out_dir / name, "needs": needs, "overrides": [str(o) for o in overrides],
                      "report": list(stage.get("report") or [])})
    if only:
        last = max(names.index(n) for n in only)
        steps = steps[: last + 1]
    return steps


def check_stages(steps: list[dict[str, Any]]) -> None:
    """Compose and validate every stage's ``rlhf-train`` config before the first stage runs, so a typo in a late stage
    (``ppo:method.kl_coeff=0.1``) is reported in seconds, not after the earlier stages have trained."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from rlhf.config import key_hints, validate_config

    def compose(overrides: list[str]) -> DictConfig:
        return GlobalHydra.instance().hydra.compose_config("train", overrides, run_mode=RunMode.RUN,
                                                           with_log_configuration=False)

    problems = []
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg  # the pipeline's own (None outside a Hydra app); each stage is checked under its own
    for step in steps:
        overrides = [*step["overrides"], f"hydra.run.dir={step['dir']}"]
        try:
            if GlobalHydra.instance().is_initialized():
                cfg = compose(overrides)
            else:
                with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
                    cfg = compose(overrides)
            with open_dict(cfg):  # ${hydra:runtime.output_dir} (paths.output_dir) resolves to the stage's run dir
                cfg.hydra.runtime.output_dir = str(step["dir"])
            hydra_config.set_config(cfg)
            validate_config(cfg)
        except Exception as err:  # Hydra's composition errors and our ConfigError alike
            hints = "".join(f"\n      Hint: {hint}" for hint in key_hints(step["overrides"]))
            message = str(err).strip().split("\nTo append to your config")[0]  # Hydra's '+key' advice: not for a schema
            problems.append(f"stage {step['name']}: {message}{hints}")
    hydra_config.cfg = previous
    if problems:
        raise PipelineError("a stage's config is invalid (nothing was run):\n  - " + "\n  - ".join(problems))


def stage_command(step: dict[str, Any], resume: bool) -> list[str]:
    """The stage's ``rlhf-train`` command; ``resume``: continue from the newest readable checkpoint of its run dir."""
    command = [sys.executable, "-m", "rlhf.train", *step["overrides"], f"hydra.run.dir={step['dir']}"]
    if resume:
        command.append("ckpt_path=auto")
    return command


def _marker(directory: Path) -> dict[str, Any] | None:
    path = directory / DONE
    return json.loads(path.read_text()) if path.exists() else None


def _stale_reason(step: dict[str, Any], marker: dict[str, Any], done: dict[str, dict]) -> str | None:
    if marker["overrides"] != step["overrides"]:
        changed = sorted(set(step["overrides"]) ^ set(marker["overrides"]))
        return f"its overrides changed ({' '.join(changed)})"
    for need in step["needs"]:
        if marker["inputs"].get(need) != done[need]["id"]:
            return f"stage {need} ran again since"
    return None


def _move_aside(directory: Path) -> Path:
    target = directory.with_name(f"{directory.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(directory), str(target))
    return target


def _headline(directory: Path) -> tuple[str | None, float | None]:
    """The stage's optimised metric (``optimized_metric`` of its resolved config) and its value."""
    config, metrics = directory / "config_resolved.yaml", directory / "metrics.json"
    if not config.exists() or not metrics.exists():
        return None, None
    name = OmegaConf.load(config).get("optimized_metric")
    value = json.loads(metrics.read_text()).get(name) if name else None
    return name, float(value) if isinstance(value, (int, float)) else None


def stage_report(step: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics that show a stage worked (``stages.<name>.report`` in ``rlhf/conf/pipeline.yaml``: ``label``, ``key``
    and optionally ``start``, the same metric before training), read from its ``metrics.json``."""
    path = step["dir"] / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for item in step.get("report") or []:
        value, start = metrics.get(item["key"]), metrics.get(item.get("start") or "")
        if isinstance(value, (int, float)):
            out.append({"label": item["label"], "key": item["key"], "value": float(value),
                        "start": float(start) if isinstance(start, (int, float)) else None})
    return out


def run_pipeline(cfg: DictConfig, routed: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    steps = plan(cfg, routed)
    check_stages(steps)
    rerun = set(cfg.rerun or [])
    done: dict[str, dict] = {}  # stage -> its completion marker
    rows: list[dict[str, Any]] = []
    out_dir = Path(cfg.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for step in steps:
            rows.append(_run_stage(step, rerun, done))
    finally:
        write_json(out_dir / "pipeline_summary.json", rows)
        print(format_table(rows, out_dir), flush=True)
    return rows


def _run_stage(step: dict[str, Any], rerun: set[str], done: dict[str, dict]) -> dict[str, Any]:
    name, directory = step["name"], step["dir"]
    marker = _marker(directory)
    if marker is not None:
        reason = "rerun= asked for it" if name in rerun else _stale_reason(step, marker, done)
        if reason is None:
            done[name] = marker
            metric, value = _headline(directory)
            print(f"[pipeline] {name}: completed earlier, skipped ({directory})", flush=True)
            return {"stage": name, "status": "skipped", "metric": metric, "value": value,
                    "seconds": marker.get("seconds"), "run_dir": str(directory), "report": stage_report(step)}
        old = _move_aside(directory)
        print(f"[pipeline] {name}: runs again because {reason}; the previous run dir is now {old}", flush=True)
    for need in step["needs"]:
        export = step["dir"].parent / need / "export"
        if not (export / "config.json").exists():
            raise PipelineError(f"stage {name} needs the export of stage {need} at {export}, which is missing")
    resume = bool(resume_points(directory / "checkpoints"))
    command = stage_command(step, resume)
    status = "resumed" if resume else "ran"
    alone = "rlhf-train " + " ".join(command[3:])  # the same run, launched by hand
    print(f"[pipeline] {name}: {'resuming from its newest checkpoint' if resume else 'starting'}\n"
          f"[pipeline]   {alone}", flush=True)
    start = time.perf_counter()
    # one W&B group for the whole pipeline (W&B's own variable; a group set by the user wins)
    group = os.environ.get("WANDB_RUN_GROUP") or f"pipeline-{step['dir'].parent.name}"
    result = subprocess.run(command, env={**os.environ, "WANDB_RUN_GROUP": group})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise PipelineError(f"stage {name} failed (exit code {result.returncode}); its log: {directory}/train.log. "
                            f"Fix it and re-run rlhf-pipeline (completed stages are skipped, this one resumes), or "
                            f"run the stage alone: {alone}")
    if not (directory / "export" / "config.json").exists():
        raise PipelineError(f"stage {name} finished without an export in {directory}/export (export=false?); "
                            f"the next stages need it")
    marker = {"id": uuid.uuid4().hex, "stage": name, "overrides": step["overrides"],
              "inputs": {need: done[need]["id"] for need in step["needs"]}, "seconds": seconds,
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(directory / DONE, marker)
    done[name] = marker
    metric, value = _headline(directory)
    return {"stage": name, "status": status, "metric": metric, "value": value, "seconds": seconds,
            "run_dir": str(directory), "report": stage_report(step)}


def format_table(rows: list[dict[str, Any]], out_dir: Path) -> str:
    """Per stage: status, time, and what shows it worked (its report: ``label start -> end``), then its run dir."""
    lines = ["", f"Pipeline {out_dir}", f"  {'stage':<8} {'status':<8} {'time':>6}  result"]
    for row in rows:
        seconds = f"{row['seconds']:.0f} s" if isinstance(row.get("seconds"), (int, float)) else "-"
        parts = [f"{r['label']} {_number(r['start'])} -> {_number(r['value'])}" if r.get("start") is not None else
                 f"{r['label']} {_number(r['value'])}" for r in row.get("report") or []]
        if not parts and isinstance(row.get("value"), float):
            parts = [f"{row['metric']} {_number(row['value'])}"]
        lines.append(f"  {row['stage']:<8} {row['status']:<8} {seconds:>6}  {'; '.join(parts) or '-'}")
        lines.append(f"  {'':<8} {'':<8} {'':>6}  ({row['run_dir']})")
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3f}"


_ROUTED: dict[str, list[str]] = {}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="pipeline")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run_pipeline(cfg, _ROUTED)
    except PipelineError as err:
        print(f"\nError: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from err


def main() -> None:
    rest, routed = split_stage_args(sys.argv[1:])
    _ROUTED.clear()
    _ROUTED.update(routed)
    sys.argv = [sys.argv[0], *rest]
    _hydra_main()


if __name__ == "__main__":
    main()
