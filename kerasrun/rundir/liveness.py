"""Whether a run is alive: its process, its folder's lock, its heartbeat; its status as a reader should see it."""

from __future__ import annotations

import fcntl
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeGuard

from kerasrun.errors import KerasrunError
from kerasrun.rundir.checkpoints import list_checkpoints
from kerasrun.rundir.layout import LOCK_FILE

HEARTBEAT_SECONDS = 30.0  # how often a training process rewrites run.json's heartbeat, whatever the epoch length
STALE_AFTER_SECONDS = 4 * HEARTBEAT_SECONDS  # a run on another host with an older heartbeat has crashed


class RunRecordError(KerasrunError):
    """run.json could not be written (a full disk, a removed folder), or another process trains in the folder."""


def process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the process name (Linux), or None where it can't be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name before ")" may hold spaces
    except (OSError, IndexError):
        return None


def process_start_ticks(pid: int, fields: list[str] | None = None) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell it from a later process with its pid."""
    fields = process_stat(pid) if fields is None else fields
    try:
        return int(fields[19]) if fields else None  # field 22 of proc(5)
    except (IndexError, ValueError):
        return None


def process_identity() -> dict[str, Any]:
    """pid, host and start time of this process, as run.json records them."""
    return {"pid": os.getpid(), "host": platform.node(), "pid_started": process_start_ticks(os.getpid())}


def process_alive(pid: int, started: int | None) -> bool:
    """True when process `pid` on this host exists and is the same process that was recorded."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        pass
    fields = process_stat(pid)
    if fields and fields[0] in ("Z", "X"):  # dead, not yet reaped by its parent: kill(pid, 0) still succeeds on a zombie
        return False
    now = process_start_ticks(pid, fields or [])
    return started is None or now is None or now == started


def seconds_since(timestamp: str | None) -> float | None:
    """Seconds from an ISO 8601 time to now, or None when it can't be read."""
    then = parse_time(timestamp)
    return None if then is None else (datetime.now(timezone.utc) - then).total_seconds()


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from run.json, always with a time zone (a naive one, written by hand, is this machine's local time); None
    when it can't be read."""
    try:
        then = datetime.fromisoformat(str(value)) if value else None
    except (ValueError, OverflowError):
        return None
    if then is not None and then.tzinfo is None:
        try:
            then = then.astimezone()  # a naive time minus an aware one would raise TypeError
        except (OverflowError, OSError, ValueError):  # year 1 or 9999 in a far time zone
            return None
    return then


def is_pid(value: Any) -> TypeGuard[int]:
    """Whether a run.json field can be a process id (Linux allows at most 2**22)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def lock_run_dir(run_dir: Path) -> int:
    """Hold the run folder's lock for as long as this process trains in it (the kernel releases it when the process dies).

    Raises RunRecordError when another process holds it: two processes never train into one folder.
    """
    fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunRecordError(f"another kerasrun process is training in {run_dir}") from None
    return fd


def run_dir_locked(run_dir: Path) -> bool | None:
    """Whether a process holds the run folder's lock; None when the folder has no lock file (kerasrun before 0.2)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO in its place must not block the reader
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing releases the shared lock just taken
    return False


def effective_status(info: dict[str, Any], run_dir: Path | None = None) -> str:
    """run.json's status, except that a `running` run whose process is gone is `crashed`.

    On the host that trains it, the run folder's lock tells (the kernel drops it with the process,
    whatever its pid namespace), else the recorded process is checked; a run on another host counts
    as crashed when its heartbeat (rewritten every HEARTBEAT_SECONDS while it trains) is
    STALE_AFTER_SECONDS old.
    """
    status = str(info.get("status", "unknown"))
    if status != "running" or "pid" not in info:
        return status
    if info.get("host") == platform.node():
        locked = run_dir_locked(run_dir) if run_dir is not None else None
        if locked is not None:
            return status if locked else "crashed"
        pid, started = info.get("pid"), info.get("pid_started")
        if is_pid(pid):  # else not kerasrun's writing: its heartbeat below is all that tells
            return status if process_alive(pid, started if isinstance(started, int) else None) else "crashed"
    age = seconds_since(info.get("heartbeat"))
    return "crashed" if age is not None and age > STALE_AFTER_SECONDS else status


def resume_blocker(run_dir: Path, info: dict[str, Any]) -> str | None:
    """Why `kerasrun resume` could not continue this run (no checkpoint), or None when it can."""
    if not list_checkpoints(run_dir):
        return "it has no checkpoint (output.checkpoint was off, or it stopped before its first epoch ended)"
    return None


def resume_command(run_dir: Path | str, info: dict[str, Any]) -> str:
    """How to continue a run: `kerasrun resume RUN_DIR` — on every worker, for a multi-worker run `kerasrun launch` did not start."""
    cluster = info.get("cluster")
    command = f"`kerasrun resume {run_dir}`"
    if not isinstance(cluster, dict) or cluster.get("launcher") or not isinstance(cluster.get("workers"), int) or cluster["workers"] < 2:
        return command  # one process, or `kerasrun launch`'s workers, which resume starts again itself
    return f"{command} on each of its {cluster['workers']} workers (each with its own {cluster.get('resolver') or 'cluster'} settings)"


STATUS_PHRASES = {
    "crashed": "crashed",
    "failed": "failed",
    "interrupted": "was interrupted",
    "pruned": "was pruned by a sweep",
    "diverged": "diverged",
    "running": "is still running",
}


def status_phrase(status: str) -> str:
    """`the run crashed`, `the run was interrupted`, ... (a status read as English)."""
    return STATUS_PHRASES.get(status, f"is {status}")
