"""The sweep folders under a runs folder, as `kerasrun runs` shows them: status (a dead `running` sweep is `crashed`), trials, best.

sweep.json is the view any process of a sweep rewrites from its study; it lists every process that
worked on it. A sweep that still says `running` when every one of those processes is known to be gone
(all on this host, all dead) crashed: the last process to leave a finished sweep writes `completed`,
and one stopped by a signal writes `interrupted`. Processes on other hosts can't be checked from here.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kerasrun.rundir.io import RunFileError, present, read_json
from kerasrun.rundir.layout import SWEEP_FILE
from kerasrun.rundir.liveness import is_pid, process_alive


@dataclass
class SweepSummary:
    """What `kerasrun runs` shows of one sweep folder."""

    folder: str  # relative to the runs folder
    status: str
    method: str | None
    planned: int | None
    ended: int  # trials that ended (completed, failed, diverged, pruned)
    completed: int
    best_run_dir: str | None
    best_metric: float | None
    metric: str | None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return asdict(self)


def list_sweeps(base: Path) -> list[SweepSummary]:
    """Every sweep folder directly under `base`, in name order; one that can't be read says why."""
    found = []
    for folder in sorted(p for p in Path(base).iterdir() if p.is_dir() and present(p / SWEEP_FILE)):
        found.append(summarize_sweep(folder, folder.relative_to(base).as_posix()))
    return found


def summarize_sweep(folder: Path, name: str) -> SweepSummary:
    """One sweep folder's summary (never raises for a broken sweep.json)."""
    try:
        record = read_json(folder / SWEEP_FILE)
        if not isinstance(record, dict):
            raise ValueError("is not a JSON object")
    except (RunFileError, ValueError) as exc:
        return SweepSummary(name, "unreadable", None, None, 0, 0, None, None, None, str(exc))
    trials = [t for t in record.get("trials") or [] if isinstance(t, dict)]
    best = record.get("best") if isinstance(record.get("best"), dict) else {}
    planned = record.get("planned")
    return SweepSummary(
        name,
        sweep_status(record),
        str(record.get("method")),
        planned if isinstance(planned, int) else None,
        sum(t.get("status") in ("completed", "failed", "diverged", "pruned") for t in trials),
        sum(t.get("status") == "completed" for t in trials),
        best.get("run_dir") if best else None,
        best.get("metric") if best else None,
        str(record.get("metric")),
    )


def sweep_status(record: dict[str, Any]) -> str:
    """sweep.json's status, except that a `running` sweep whose processes are all gone (on this host) is `crashed`."""
    status = str(record.get("status", "unknown"))
    workers = [w for w in record.get("workers") or [] if isinstance(w, dict)]
    if status != "running" or not workers:
        return status
    here = platform.node()
    for worker in workers:
        pid, started = worker.get("pid"), worker.get("pid_started")
        if worker.get("host") != here or not is_pid(pid) or process_alive(pid, started if isinstance(started, int) else None):
            return status
    return "crashed"
