"""Restart-safe training: what `kerasrun train CONFIG --resume-existing` (or a requeued Slurm job) does with a run folder.

A platform that restarts a failed or preempted container (Kubernetes `restartPolicy: OnFailure`, a
TFJob, a requeued Slurm job) runs the same command again. So the command decides from the folder:
none yet → train it; interrupted or crashed (or failed) → resume it with `kerasrun resume`'s own
checks (`load_for_resume`); completed → report and change nothing; still training → refuse. A folder
that holds another config's run is refused with the keys that differ (exit 2), never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kerasrun.config.resolved import resolved_dict
from kerasrun.config.schema import Config
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.checkpoints import list_checkpoints
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import LOCK_FILE, RUN_FILE
from kerasrun.rundir.liveness import run_dir_locked, status_phrase
from kerasrun.rundir.opened import open_run
from kerasrun.train.resume import RESUMABLE_KEYS, ResumePlan, load_for_resume

# Statuses a restart continues: what a preemption, a kill or a failing node leaves behind.
CONTINUED = ("interrupted", "crashed", "failed", "pruned")


@dataclass
class Restart:
    """What the restart-safe command does with its run folder."""

    action: Literal["start", "resume", "completed"]
    run_dir: Path
    plan: ResumePlan | None = None  # for `resume`
    previous: str | None = None  # the folder's status before this process (None: no run there yet)
    note: str | None = None  # e.g. that an attempt without any checkpoint was started over


def named_run_dir(runs_dir: Path, name: str) -> Path:
    """`runs_dir/NAME` exactly (no timestamp: the same command must find it again); ConfigError for a name that is no folder name."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ConfigError(Problem(key="--name", message=f"{name!r} can't be a run folder's name", hint="a name without `/`"))
    return Path(runs_dir) / name


def plan_restart(config: Config, run_dir: Path, trust: bool = False) -> Restart:
    """Decide from `run_dir` whether to start, resume or leave the run of `config`; ConfigError when it must not be touched."""
    run_dir = Path(run_dir)
    where = str(run_dir)
    if not run_dir.exists() or not any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        return Restart("start", run_dir)  # nothing yet (or a folder made by a process killed before run.json)
    if not (run_dir / RUN_FILE).exists():
        raise ConfigError(
            Problem(key="--name", file=where, message="the folder exists and is not a kerasrun run folder", hint="give another --name")
        )
    run = open_run(run_dir, trust)
    if run_dir_locked(run_dir) or run.status == "running":
        info = run.info
        raise ConfigError(
            Problem(
                key="--resume-existing",
                file=where,
                message=f"the run is still training (pid {info.get('pid')} on {info.get('host')}); a second process must not train into it",
                hint="wait for it to end (or stop it); this command then resumes or reports it",
            )
        )
    stored = run.config()
    new = compared_dict(config, stored)
    differing = differing_keys(resolved_dict(stored), new)
    fixed = [key for key in differing if not resumable(key)]
    if fixed:
        raise ConfigError(
            Problem(
                key=", ".join(fixed),
                file=where,
                message=f"the folder holds a run of another config: {', '.join(fixed)} differ",
                hint="train with the folder's own config (its config.yaml), or give another --name",
            )
        )
    overrides = [f"{key}={json.dumps(value_at(new, key))}" for key in differing]
    more_epochs = config.train.epochs > stored.train.epochs
    if run.status == "completed" and not more_epochs:
        return Restart("completed", run_dir, previous="completed")
    if run.status in CONTINUED and not list_checkpoints(run_dir) and not epochs_completed(run_dir):
        # Stopped before its first epoch ended: nothing to continue, and nothing lost by starting over.
        shutil.rmtree(run_dir)
        note = f"the previous attempt {status_phrase(run.status)} before its first checkpoint; starting it over"
        return Restart("start", run_dir, previous=run.status, note=note)
    plan = load_for_resume(run_dir, overrides, trust)  # `kerasrun resume`'s own checks: diverged, no checkpoint, ...
    return Restart("resume", run_dir, plan, previous=run.status)


def compared_dict(config: Config, stored: Config) -> dict[str, Any]:
    """`config` resolved for comparison with a run folder's config `stored`."""
    new = resolved_dict(config)
    if new["data"].get("source") == "keras" and new["data"].get("dir") is None:  # the folder keeps where $KERASRUN_DATA_DIR pointed
        new["data"]["dir"] = resolved_dict(stored)["data"].get("dir")
    return new


def same_experiment(config: Config, run_dir: Path, trust: bool = False) -> bool:
    """Whether the run folder holds a run of `config` (only keys `kerasrun resume` may change differ); False when it can't be read."""
    try:
        stored = open_run(run_dir, trust).config()
    except (ConfigError, OSError):
        return False
    return not [key for key in differing_keys(resolved_dict(stored), compared_dict(config, stored)) if not resumable(key)]


def epochs_completed(run_dir: Path) -> int:
    """run.json's count of completed epochs (0 when it has none)."""
    try:
        done = read_json(run_dir / RUN_FILE).get("epochs_completed")
    except (RunFileError, AttributeError):
        return 0
    return done if isinstance(done, int) else 0


def resumable(key: str) -> bool:
    """Whether a dotted key may differ between a run folder's config and the command's (train.epochs, runtime.device, ...)."""
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_KEYS)


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two resolved configs (a whole section when only one of them has it)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if resumable(dotted) and old.get(key) != new.get(key):
                out.append(dotted)  # passed on whole, as `--set`
            else:
                out += differing_keys(old.get(key), new.get(key), dotted)
        return out
    return [prefix] if old != new else []


def value_at(data: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a resolved config."""
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def find_job_run(runs_dir: Path, config: Config, job_id: str) -> Path | None:
    """The newest run folder in `runs_dir` of `config` that Slurm job `job_id` started (run.json's `slurm.job_id`), or None.

    One job may train several configs (or one config with other `--set` values) one after the other:
    only a folder of this very experiment is this command's.
    """
    found: list[tuple[str, Path]] = []
    try:
        folders = [p for p in Path(runs_dir).iterdir() if p.is_dir()]
    except OSError:
        return None
    for folder in folders:
        try:
            info = read_json(folder / RUN_FILE)
        except (RunFileError, OSError):
            continue
        slurm = info.get("slurm") if isinstance(info, dict) else None
        if isinstance(slurm, dict) and str(slurm.get("job_id")) == job_id and info.get("name") == config.name:
            found.append((str(info.get("started")), folder))
    for _started, folder in sorted(found, reverse=True):
        if same_experiment(config, folder):
            return folder
    return None


def slurm_job() -> dict[str, Any] | None:
    """The Slurm job this process runs in (SLURM_JOB_ID and friends), for run.json; None outside Slurm."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    fields = {"job_id": job_id, "restart_count": os.environ.get("SLURM_RESTART_COUNT"), "procid": os.environ.get("SLURM_PROCID")}
    return {key: value for key, value in fields.items() if value is not None}


requeued_jobs: set[str] = set()


def requeue_slurm_job(signum: int) -> str | None:
    """After SIGUSR1 in a Slurm job (the run is checkpointed and marked), `scontrol requeue $SLURM_JOB_ID`; what happened, as text.

    Only task 0 asks (every task of the job gets the signal); the requeued job's `kerasrun train` finds
    the run folder by the job id in run.json and resumes it. None when there is nothing to requeue.
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if signum != signal.SIGUSR1 or not job_id or os.environ.get("SLURM_PROCID", "0") != "0" or job_id in requeued_jobs:
        return None
    requeued_jobs.add(job_id)  # once: the clean-up path and the watchdog may both get here
    try:
        done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not requeue Slurm job {job_id}: {exc}"
    if done.returncode != 0:
        return f"could not requeue Slurm job {job_id}: scontrol exited {done.returncode}: {done.stderr.strip()}"
    return f"requeued Slurm job {job_id} (scontrol requeue); when it starts again, the same command resumes this run"
