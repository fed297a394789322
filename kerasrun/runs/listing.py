"""`kerasrun runs`: one summary per run folder under a runs folder, from its JSON and YAML files, without TensorFlow."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.files import (
    is_run_folder,
    is_sweep_folder,
    last_value,
    monitored_metric,
    read_config_section,
    read_history,
    trial_folders,
)
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import HISTORY_FILE, RUN_FILE
from kerasrun.rundir.liveness import effective_status, parse_time
from kerasrun.runs.table import format_number

UNREADABLE = "unreadable"  # the status of a folder whose run.json can't be read
STATUSES = ("running", "completed", "interrupted", "crashed", "failed", "diverged", "pruned", UNREADABLE)  # pruned: a sweep trial


@dataclass
class RunSummary:
    """What `kerasrun runs` shows of one run folder."""

    path: str  # the run folder
    name: str | None
    status: str  # run.json's, `crashed` for a `running` run whose process is gone, `unreadable` for a broken folder
    started: str | None
    ended: str | None
    duration_s: float | None  # for a running run, so far; for a crashed one, up to its last heartbeat
    epochs: int | None  # epochs completed
    planned_epochs: int | None  # the config's train.epochs
    loop: str | None
    device: str | None
    monitor: str | None  # the metric the run's callbacks watch (else val_loss, else loss)
    monitor_value: float | None  # its value after the last epoch
    metrics: dict[str, Any] | None  # the test metrics
    problems: list[str] = field(default_factory=list)  # files that could not be read
    folder: str = ""  # the run folder relative to the runs folder (`<sweep>/trial-000` for a sweep's trial)

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return asdict(self)


def list_runs(runs_dir: Path, statuses: list[str] | None = None, name_glob: str | None = None) -> list[RunSummary]:
    """Every run folder directly under `runs_dir`, by folder name (which starts with the start time); filtered by status and name.

    A folder with neither run.json nor config.yaml is not a run and is left out; one whose files
    can't be read is listed with status `unreadable` and the reason.
    """
    base = Path(runs_dir)
    if not base.is_dir():
        raise ConfigError(
            Problem(
                key="--runs-dir",
                message="no such folder" if not base.exists() else "is not a folder",
                file=str(base),
                hint="run folders go to output.runs_dir (default `runs`, under the directory you trained from); pass --runs-dir DIR",
            )
        )
    wanted = set(statuses or [])
    unknown = wanted - set(STATUSES)
    if unknown:
        raise ConfigError(
            Problem(key="--status", message=f"unknown status {', '.join(sorted(unknown))}", hint=f"one of: {', '.join(STATUSES)}")
        )
    summaries = []
    for run_dir in run_folders(base):
        summary = summarize_run(run_dir)
        summary.folder = run_dir.relative_to(base).as_posix()
        if wanted and summary.status not in wanted:
            continue
        if name_glob and not (fnmatch.fnmatchcase(summary.name or "", name_glob) or fnmatch.fnmatchcase(summary.folder, name_glob)):
            continue
        summaries.append(summary)
    return summaries


def run_folders(base: Path) -> list[Path]:
    """The run folders directly under `base`, and the trial folders of each sweep folder (one holding sweep.json), in name order."""
    found = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_run_folder(folder):
            found.append(folder)
        elif is_sweep_folder(folder):  # `kerasrun sweep` keeps its trials inside its folder
            found += trial_folders(folder)
    return found


def summarize_run(run_dir: Path) -> RunSummary:
    """One run folder's summary; never raises for a broken folder (its summary says what is wrong)."""
    summary = RunSummary(str(run_dir), None, UNREADABLE, None, None, None, None, None, None, None, None, None, None)
    try:
        info = read_json(run_dir / RUN_FILE)
        if not isinstance(info, dict):
            raise RunFileError(Problem(key="", message="is not a JSON object", file=str(run_dir / RUN_FILE)))
    except RunFileError as exc:
        summary.problems.append(str(exc))
        return summary
    summary.name = text_or_none(info.get("name"))
    summary.status = effective_status(info, run_dir)
    summary.started, summary.ended = text_or_none(info.get("started")), text_or_none(info.get("ended"))
    summary.duration_s = run_duration(info, summary.status)
    summary.loop, summary.device = text_or_none(info.get("loop")), text_or_none(info.get("device"))
    metrics = info.get("metrics")
    summary.metrics = metrics if isinstance(metrics, dict) else None
    epochs = info.get("epochs_completed")
    history: dict[str, list[Any]] | None = None
    train: dict[str, Any] | None = None
    try:
        history = read_history(run_dir)
    except RunFileError as exc:
        if (run_dir / HISTORY_FILE).exists() or summary.status == "completed":
            summary.problems.append(str(exc))  # a run stopped before its first epoch has no history: that is no problem
    try:
        train = read_config_section(run_dir, "train")
    except RunFileError as exc:
        summary.problems.append(str(exc))
    if not isinstance(epochs, int) and history is not None:
        epochs = len(history.get("epoch") or [])
    summary.epochs = epochs if isinstance(epochs, int) else None
    planned = (train or {}).get("epochs")
    summary.planned_epochs = planned if isinstance(planned, int) else None
    summary.monitor = monitored_metric(train, history)
    if summary.monitor is not None and history is not None:
        summary.monitor_value = last_value(history.get(summary.monitor) or [])
    if summary.problems:  # a folder with a file kerasrun can't read is one `unreadable` row saying why, whatever run.json says
        summary.status = UNREADABLE
    return summary


def text_or_none(value: Any) -> str | None:
    """A string field of run.json, None when it is absent or not a string."""
    return value if isinstance(value, str) else None


def run_duration(info: dict[str, Any], status: str) -> float | None:
    """Seconds its processes ran: from start to end; to now for a running run; to the last heartbeat for a crashed one.

    A resumed run's time between a process's end and the resume is left out (each resume records when the
    process before it ended); a run.json from before that record counts it in.
    """
    started = parse_time(info.get("started"))
    ended = (
        datetime.now(timezone.utc)
        if status == "running"
        else parse_time(info.get("ended") or (info.get("heartbeat") if status == "crashed" else None))
    )
    if started is None or ended is None:
        return None
    stopped = 0.0  # the time between each stop and its resume
    for resume in info.get("resumes") or []:
        if (
            isinstance(resume, dict)
            and (previous := parse_time(resume.get("previous_ended")))
            and (again := parse_time(resume.get("time")))
        ):
            stopped += max((again - previous).total_seconds(), 0.0)
    return max((ended - started).total_seconds() - stopped, 0.0)


def format_duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h01m` (empty when unknown)."""
    if seconds is None:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_started(value: str | None) -> str:
    """`2026-11-25 22:38` from run.json's ISO time (as recorded, in the training machine's time zone)."""
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M") if parsed is not None else (value or "")


COLUMNS = ("run", "name", "status", "started", "duration", "epochs", "loop", "device", "monitored", "test")


def table_cells(summary: RunSummary) -> list[str]:
    """The table row of one run, in COLUMNS order."""
    if summary.status == UNREADABLE:
        return [summary.folder or Path(summary.path).name, "", UNREADABLE, "", "", "", "", "", "", "; ".join(summary.problems)]
    epochs = "" if summary.epochs is None else str(summary.epochs)
    if summary.planned_epochs is not None and epochs:
        epochs += f"/{summary.planned_epochs}"
    monitored = f"{summary.monitor}={format_number(summary.monitor_value)}" if summary.monitor and summary.monitor_value is not None else ""
    test = " ".join(f"{key}={format_number(value)}" for key, value in list((summary.metrics or {}).items())[:2])
    return [
        summary.folder or Path(summary.path).name,
        summary.name or "",
        summary.status,
        format_started(summary.started),
        format_duration(summary.duration_s),
        epochs,
        summary.loop or "",
        summary.device or "",
        monitored,
        test,
    ]
