"""The run folder: created fresh (never overwriting), every file written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import kerasrun
from kerasrun.errors import KerasrunError
from kerasrun.rundir import trust

RUN_FILE = "run.json"
LOCK_FILE = ".lock"  # held (flock) by the process training in the folder
# Fields that describe how a process ended; a resumed run starts without them.
OUTCOME_FIELDS = ("error", "signal", "forced", "checkpoint_epoch", "diverged_at", "metrics", "timings", "epochs_completed", "pruned")
HEARTBEAT_SECONDS = 30.0  # how often a training process rewrites run.json's heartbeat, whatever the epoch length
STALE_AFTER_SECONDS = 4 * HEARTBEAT_SECONDS  # a run on another host with an older heartbeat has crashed


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays become Python, NaN/inf become null."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy here
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file via a temp file in the same folder (fsync'd), then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), file_mode())  # mkstemp's 0600 would make a shared run folder unreadable to others
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def file_mode() -> int:
    """The mode a plain `open()` would give a new file: 0o666 less the process's umask."""
    try:  # Linux shows the umask without changing it
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON atomically (NaN/inf as null)."""
    write_text_atomic(path, json.dumps(to_jsonable(value), indent=2, allow_nan=False) + "\n")


def write_signed(path: Path, info: dict[str, Any]) -> None:
    """Write a run.json record atomically, signed with this user's key (the signature covers what the file holds)."""
    plain = to_jsonable(info)
    plain[trust.SIGNATURE_FIELD] = trust.sign(plain)
    write_json_atomic(path, plain)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def create_run_dir(runs_dir: Path, name: str, now: datetime | None = None) -> Path:
    """Make `runs_dir/<YYYYmmdd-HHMMSS>-<name>[-N]`, never reusing an existing folder."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}-{name}"
    for n in range(1, 10_000):
        path = runs_dir / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()  # atomic: fails if another run took the name first
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {runs_dir}")


def git_commit(cwd: Path) -> str | None:
    """The current git commit of `cwd`'s repository, or None outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(versions: dict[str, str]) -> dict[str, Any]:
    """Versions and machine facts worth keeping with a result."""
    return {
        "kerasrun": kerasrun.__version__,
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "git_commit": git_commit(Path.cwd()),
    }


def now_iso() -> str:
    """The current time, ISO 8601 with timezone."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


# --------------------------------------------------------------------------- liveness


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell it from a later process with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22 of proc(5); the name before ")" may hold spaces


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
    now = process_start_ticks(pid)
    return started is None or now is None or now == started


def seconds_since(timestamp: str | None) -> float | None:
    """Seconds from an ISO 8601 time to now, or None when it can't be read."""
    try:
        then = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return None
    return (datetime.now(timezone.utc) - then).total_seconds()


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
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
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
        return status if process_alive(int(info["pid"]), info.get("pid_started")) else "crashed"
    age = seconds_since(info.get("heartbeat"))
    return "crashed" if age is not None and age > STALE_AFTER_SECONDS else status


def resume_blocker(run_dir: Path, info: dict[str, Any]) -> str | None:
    """Why `kerasrun resume` could not continue this run (no checkpoint, multi-worker), or None when it can."""
    if info.get("placement", {}).get("strategy") == "MultiWorkerMirroredStrategy":
        return "multi-worker runs can't be resumed yet (its weights can start a new run: model.init_from)"
    if not any((Path(run_dir) / "checkpoints").glob("epoch-*.npz")):
        return "it has no checkpoint (output.checkpoint was off, or it stopped before its first epoch ended)"
    return None


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


# --------------------------------------------------------------------------- run.json


class RunRecordError(KerasrunError):
    """run.json could not be written (a full disk, a removed folder)."""


class RunRecord:
    """`run.json`: status and facts of one run, signed and rewritten atomically on every change.

    While the run trains, a background thread rewrites its heartbeat every HEARTBEAT_SECONDS, so a
    reader on another host can tell a live run from one whose machine died.
    """

    def __init__(self, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.folder_lock: int | None = lock_run_dir(self.run_dir)
        self.info = info
        self.lock = threading.Lock()
        self.stop_beating = threading.Event()
        self.beater: threading.Thread | None = None
        try:
            self.save()
        except BaseException:
            self.release()
            raise

    @classmethod
    def start(
        cls, run_dir: Path, *, name: str, seed: int, device: str, versions: dict[str, str], command: list[str] | None, **extra: Any
    ) -> RunRecord:
        """Create run.json with status `running`."""
        return cls(
            run_dir,
            {
                "name": name,
                "status": "running",
                "started": now_iso(),
                "ended": None,
                "command": command if command is not None else sys.argv,
                **process_identity(),
                "heartbeat": now_iso(),
                "seed": seed,
                "device": device,
                **extra,
                "environment": environment_info(versions),
            },
        )

    @classmethod
    def reopen(cls, run_dir: Path, *, from_epoch: int, command: list[str] | None) -> RunRecord:
        """Take over an existing run.json to resume the run: `running` again, this process, the resume recorded."""
        info = read_json(Path(run_dir) / RUN_FILE)
        resume = {
            "time": now_iso(),
            "from_epoch": from_epoch,
            "previous_status": effective_status(info, run_dir),
            "previous_timings": info.get("timings"),
            "command": command or sys.argv,
        }
        for stale in OUTCOME_FIELDS:  # what the previous process ended with; this one writes its own
            info.pop(stale, None)
        info.update(status="running", ended=None, **process_identity(), heartbeat=now_iso())
        info["resumes"] = [*info.get("resumes", []), resume]
        return cls(run_dir, info)

    def record_config(self, text: str) -> None:
        """Write config.yaml and bind it to this record's signature."""
        write_text_atomic(self.run_dir / "config.yaml", text)
        self.update(config_sha256=trust.config_digest(text.encode("utf-8")))

    def update(self, **fields: Any) -> None:
        """Change fields and rewrite run.json."""
        with self.lock:
            self.info.update(fields)
            self.save()

    def beat(self, **fields: Any) -> None:
        """Refresh the heartbeat (and any progress fields)."""
        self.update(heartbeat=now_iso(), **fields)

    def start_heartbeat(self, seconds: float | None = None) -> None:
        """Rewrite the heartbeat every `seconds` from a daemon thread until the run finishes."""
        interval = HEARTBEAT_SECONDS if seconds is None else seconds

        def beat_until_stopped() -> None:
            while not self.stop_beating.wait(interval):
                with contextlib.suppress(OSError):  # a full disk: the final status write reports it
                    self.beat()

        self.beater = threading.Thread(target=beat_until_stopped, name="kerasrun-heartbeat", daemon=True)
        self.beater.start()

    def finish(self, status: str, **fields: Any) -> None:
        """Record the final status and end time; raise RunRecordError when run.json can't be written."""
        self.stop_beating.set()
        try:
            self.update(status=status, ended=now_iso(), **fields)
        except OSError as exc:
            raise RunRecordError(f"could not record status `{status}` in {self.run_dir / RUN_FILE}: {exc}") from exc
        finally:
            self.release()

    def release(self) -> None:
        """Let go of the run folder's lock (another process may resume the run now)."""
        if self.folder_lock is not None:
            with contextlib.suppress(OSError):
                (self.run_dir / LOCK_FILE).unlink()  # a finished run leaves no lock file behind
            os.close(self.folder_lock)
            self.folder_lock = None

    def try_finish(self, status: str, **fields: Any) -> str | None:
        """finish(), for clean-up paths that are already reporting another error: the failure as text, or None."""
        try:
            self.finish(status, **fields)
        except RunRecordError as exc:
            return str(exc)
        return None

    def save(self) -> None:
        """Sign and write run.json atomically."""
        write_signed(self.run_dir / RUN_FILE, self.info)
