"""Sweeps: a failed job is recorded and the others go on; at the end, one table of every job.

``SweepSummary`` is a Hydra callback (``rlhf/conf/hydra/default.yaml``). After each job it writes
``<sweep dir>/jobs/<job number>.json`` (status, overrides, the optimised metric, run dir, error); it runs inside the
job's process, so it works with any launcher (local, joblib, submitit on SLURM). When the multirun ends it prints the
table and writes ``<sweep dir>/sweep_summary.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rlhf.utils.run import write_json

log = logging.getLogger("rlhf")


def _job_record(config: DictConfig, job_return: JobReturn) -> dict[str, Any]:
    hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else None
    record: dict[str, Any] = {
        "job": int(hydra_cfg.job.num) if hydra_cfg is not None else None,
        "overrides": list(job_return.overrides or []),
        "status": "completed" if job_return.status == JobStatus.COMPLETED else "failed",
        "run_dir": str(hydra_cfg.runtime.output_dir) if hydra_cfg is not None else None,
        "metric": config.get("optimized_metric"),
    }
    if job_return.status == JobStatus.COMPLETED:
        value = job_return.return_value
        record["value"] = float(value) if isinstance(value, (int, float)) else None
    else:
        error = job_return._return_value  # the exception; .return_value would re-raise it
        record["error"] = f"{type(error).__name__}: {error}"
    return record


_ACTIVE: dict[str, Any] = {}  # the sweep of this process; Hydra skips on_multirun_end when a job failed


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _ACTIVE["sweep_dir"] = Path(config.hydra.sweep.dir)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        try:
            from hydra.core.hydra_config import HydraConfig

            if str(HydraConfig.get().mode) != "RunMode.MULTIRUN":
                return
            sweep_dir = Path(HydraConfig.get().sweep.dir)
        except ValueError:  # Hydra not initialised (e.g. compose API)
            return
        record = _job_record(config, job_return)
        write_json(sweep_dir / "jobs" / f"{record['job']:04d}.json", record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_sweep()


def finish_sweep() -> None:
    """Write ``sweep_summary.json`` and print the table of the sweep this process ran (once)."""
    sweep_dir = _ACTIVE.pop("sweep_dir", None)
    if sweep_dir is None:
        return
    records = [json.loads(p.read_text()) for p in sorted((sweep_dir / "jobs").glob("*.json"))]
    if not records:
        return
    failed = [r for r in records if r["status"] != "completed"]
    write_json(sweep_dir / "sweep_summary.json", {"jobs": records, "completed": len(records) - len(failed),
                                                  "failed": len(failed)})
    print(format_summary(records, sweep_dir), flush=True)


def format_summary(records: list[dict], sweep_dir: Path) -> str:
    metric = next((r["metric"] for r in records if r.get("metric")), "value")
    common = set.intersection(*(set(r["overrides"]) for r in records))  # show what varies between jobs
    lines = ["", f"Sweep {sweep_dir}: {len(records)} jobs, "
             f"{sum(r['status'] == 'completed' for r in records)} completed, "
             f"{sum(r['status'] != 'completed' for r in records)} failed",
             f"  {'job':>4}  {'status':<9}  {metric:>14}  overrides"]
    for r in records:
        value = r.get("value")
        shown = f"{value:.4f}" if isinstance(value, float) else "-"
        lines.append(f"  {r['job']:>4}  {r['status']:<9}  {shown:>14}  {' '.join(o for o in r['overrides'] if o not in common)}")
        if r["status"] != "completed":
            lines.append(f"        {r.get('error', '').replace(chr(10), ' ')[:300]}  (run dir {r['run_dir']})")
    return "\n".join(lines)
