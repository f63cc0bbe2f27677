"""Run-directory bookkeeping: provenance (git commit, versions), resume targets, metrics.json."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from rlhf.errors import ResumeError, RunDirError

PACKAGES = ("rlhf", "torch", "lightning", "transformers", "tokenizers", "hydra-core", "omegaconf", "wandb",
            "torchmetrics", "numpy")
WANDB_ID_FILE = "wandb_run_id.txt"


def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the source tree the ``rlhf`` package runs from (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata() -> dict[str, Any]:
    return {**git_state(), "versions": package_versions(), "python": platform.python_version(),
            "platform": platform.platform(), "command": " ".join(sys.argv)}


def write_json(path: Path, payload: Any) -> None:
    """Write to a temporary file and rename into place: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scalar_metrics(values: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers to plain floats (non-finite values kept as strings so JSON stays valid)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError):
            continue
        out[key] = number if math.isfinite(number) else str(number)
    return out


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path, log_dir: Path, method: str | None
                      ) -> Path | None:
    """``auto``: the newest readable checkpoint of this run dir if there is one, else None (start fresh; for requeued
    jobs). ``last``: the same for this run dir (a pinned ``hydra.run.dir``), else for the run of the same method
    under ``log_dir`` whose ``last.ckpt`` is newest. A run directory: its newest readable checkpoint. A file: itself
    (no fallback: it was asked for by name). A checkpoint that cannot be read (truncated, corrupt) is skipped with a
    warning naming it and why; see :func:`newest_readable`."""
    if not ckpt_path:
        return None
    own = output_dir / "checkpoints"
    if ckpt_path == "auto":  # resume this run dir if it has a checkpoint (a requeued job), else start fresh
        return newest_readable(own, ckpt_path) if resume_points(own) else None
    if ckpt_path == "last":
        if resume_points(own):
            return newest_readable(own, ckpt_path)
        search_root = log_dir / method if method and (log_dir / method).is_dir() else log_dir
        candidates = [p for p in search_root.glob("**/checkpoints/last.ckpt") if output_dir not in p.parents]
        if not candidates:
            raise ResumeError(f"ckpt_path=last: no last.ckpt under {search_root}; train once first, or pass a "
                              f"checkpoint file or run directory as ckpt_path")
        return newest_readable(max(candidates, key=lambda p: p.stat().st_mtime).parent, ckpt_path)
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        for directory in (path / "checkpoints", path):
            if resume_points(directory):
                return newest_readable(directory, ckpt_path)
        raise ResumeError(f"ckpt_path={ckpt_path}: the directory holds no checkpoints (checkpoints/*.ckpt)")
    if not path.exists():
        raise ResumeError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return path


def resume_points(directory: Path) -> list[Path]:
    """Resume points of a checkpoint directory, newest first: ``last.ckpt``, ``step<N>.ckpt`` and the best-k
    ``best-step<N>.ckpt`` (not ``nonfinite-*``, the state before a fault). Newest = latest modification; on a tie
    ``last.ckpt`` first (it is a link to the newest step checkpoint)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("*.ckpt") if p.name == "last.ckpt" or p.name.startswith(("step", "best-step"))]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"), reverse=True)


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (unreadable, not a Lightning checkpoint), or None."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure to read means the same thing to the user
        return f"not readable ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
    if not isinstance(state, dict) or "state_dict" not in state:
        return "not a Lightning checkpoint (no state_dict)"
    return None


def newest_readable(directory: Path, asked: str) -> Path:
    """The newest checkpoint of ``directory`` that can be read; the ones skipped are logged with the reason (a
    truncated ``last.ckpt`` must not stop a requeued job when an older ``step<N>.ckpt`` is intact)."""
    import logging

    skipped = []
    for candidate in resume_points(directory):
        if candidate.is_dir():  # a sharded (DeepSpeed/FSDP) checkpoint directory: the strategy reads it
            return candidate
        problem = checkpoint_problem(candidate)
        if problem is None:
            if skipped:
                logging.getLogger("rlhf").warning(
                    f"ckpt_path={asked}: skipped {'; '.join(skipped)}; resuming from {candidate}")
            return candidate
        skipped.append(f"{candidate.name} ({problem})")
    raise ResumeError(f"ckpt_path={asked}: no readable checkpoint in {directory}: {'; '.join(skipped)}. Start "
                      f"afresh in another run dir, or move the broken files away")


def previous_wandb_id(ckpt: Path | None) -> str | None:
    """The W&B run id stored in the run directory of a checkpoint, so a resume continues the same W&B run."""
    if ckpt is None:
        return None
    for directory in (ckpt.parent, ckpt.parent.parent):
        marker = directory / WANDB_ID_FILE
        if marker.exists():
            return marker.read_text().strip() or None
    return None


def log_samples(trainer: Any, stage: str, rows: list[dict]) -> None:
    """A sample table (prompt / response / scores rows): ``<run>/samples/<stage>_stepNNNNNN.jsonl`` and, for loggers
    that have one (W&B), ``log_table`` under ``<stage>/samples``."""
    if not rows:
        return
    directory = Path(trainer.default_root_dir) / "samples"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{stage}_step{trainer.global_step:06d}.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    columns = list(rows[0])
    for logger in trainer.loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key=f"{stage}/samples", columns=columns, data=[[r.get(c) for c in columns] for r in rows],
                             step=trainer.global_step)




def check_checkpoint(path: Path, module: Any) -> None:
    """Refuse, with the reason and the fix, a ``ckpt_path`` that this run cannot resume from: not a checkpoint, a
    checkpoint of another method, or of a model with other shapes (a different model config)."""
    import torch

    problem = checkpoint_problem(path)
    if problem is not None:
        fix = ("to start from weights exported with save_pretrained use model=pretrained "
               "model.name_or_path=<export dir>" if "Lightning" in problem else
               "pass a .ckpt written by rlhf-train or its run dir")
        raise ResumeError(f"ckpt_path={path} is {problem}; {fix}")
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    saved, ours = state.get("rlhf_module"), type(module).__name__
    if saved is not None and saved != ours:
        from rlhf.config.registry import METHOD_OF_MODULE  # (the registry imports every method, which import this)

        raise ResumeError(f"ckpt_path={path} was written by method={METHOD_OF_MODULE.get(saved, saved)} ({saved}); "
                          f"this run is method={METHOD_OF_MODULE.get(ours, ours)}. Resume it with the method that "
                          f"wrote it, or start from its export: model=pretrained model.name_or_path=<its run>/export")
    own = module.checkpointed(module.state_dict())  # (LoRA: the frozen base is not in checkpoints)
    for key, value in state["state_dict"].items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            model = (state.get("hyper_parameters") or {}).get("model")
            raise ResumeError(f"ckpt_path={path}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                              f"{tuple(own[key].shape)} in this run: the model config differs from the run that "
                              f"wrote it (its model config: {model}). Resume with that run's config "
                              f"(rlhf-train --config-path <its run dir>/.hydra --config-name config ckpt_path=...)")
    missing = [key for key in own if key not in state["state_dict"]]
    if missing:
        raise ResumeError(f"ckpt_path={path} lacks {len(missing)} of this run's parameters (e.g. {missing[0]}): it "
                          f"was written with another model or objective; resume with the config that wrote it")


# ---- one live run per run directory --------------------------------------------------------------------------------
LOCK_FILE = ".run.lock"


RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def _is_launch_rank_zero() -> bool:
    """Whether this process is rank 0 as its launcher set it (true before any launcher: a plain ``rlhf-train``).
    Lightning's DDP workers (``LOCAL_RANK``), its multi-node launch (``NODE_RANK``), torchrun (``RANK``) and srun
    (``SLURM_PROCID``) set these before the entry point runs; any of them non-zero means another rank holds the lock."""
    return not any(os.environ.get(name, "0").strip() not in ("", "0") for name in RANK_VARIABLES)


class RunDirLock:
    """An exclusive lock on ``<run dir>/.run.lock`` for the life of a run (rank 0 only), holding its pid, host and
    start time. A second run in the same directory (the same ``hydra.run.dir``, two requeues racing) is refused with
    the holder named. The lock is an ``flock`` on the open file, so the kernel drops it when its process dies, even
    by SIGKILL: a lock file left by a dead run is taken over with a message. (On network filesystems ``flock`` is
    emulated with byte-range locks, which NFS v4 and Lustre honour across hosts.)"""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.handle = None

    def __enter__(self) -> RunDirLock:
        import fcntl
        import logging
        import socket
        import time

        if not _is_launch_rank_zero():
            return self
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirError(f"{self.path.parent} is in use by a live run ({holder}); two runs in one run directory "
                              f"would mix their checkpoints and configs. Wait for it, stop it, or pick another "
                              f"hydra.run.dir") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            logging.getLogger("rlhf").warning(f"{self.path}: taking over the lock of a run that is no longer "
                                              f"running ({previous})")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:  # emptied, not removed: removing it would let a racing run lock another inode
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.flush()
            self.handle.close()
            self.handle = None


def check_writable(directory: Path, key: str) -> None:
    """Create ``directory`` and write a probe file in it, or a RunDirError naming the key to change."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"cannot write the run directory {directory} ({err.strerror or err}); set {key} to a "
                          f"writable directory (or fix its permissions)") from None


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency; keep this module importable without it
    _HydraCallback = object


class RunDirCheck(_HydraCallback):
    """Hydra callback (``rlhf/conf/hydra/default.yaml``): before Hydra creates the run (or sweep) directory and writes its
    config there, make sure it can be written, so an unwritable path is one line naming ``hydra.run.dir`` instead of
    Hydra's ``OSError`` stack. ``run_key``: the key a user sets to move it (``out_dir`` for ``rlhf-pipeline``)."""

    def __init__(self, run_key: str = "hydra.run.dir"):
        self.run_key = run_key

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config.hydra.run.dir, self.run_key)

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(directory: str, key: str) -> None:
        import sys

        try:
            check_writable(Path(str(directory)), key)
        except RunDirError as err:
            print(f"Error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
