"""`run.json` (`RunRecord`): a run folder created fresh (never overwriting), its record signed and rewritten atomically."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kerasrun
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir import trust
from kerasrun.rundir.io import read_json, to_jsonable, write_json_atomic, write_text_atomic
from kerasrun.rundir.layout import CONFIG_FILE, LOCK_FILE, RUN_FILE
from kerasrun.rundir.liveness import HEARTBEAT_SECONDS, RunRecordError, effective_status, lock_run_dir, process_identity

# Fields that describe how a process ended; a resumed run starts without them.
OUTCOME_FIELDS = (
    "error",
    "signal",
    "forced",
    "checkpoint_epoch",
    "checkpoint_step",
    "diverged_at",
    "metrics",
    "timings",
    "epochs_completed",
    "pruned",
)


def write_signed(path: Path, info: dict[str, Any]) -> None:
    """Write a run.json record atomically, signed with this user's key (the signature covers what the file holds)."""
    plain = to_jsonable(info)
    plain[trust.SIGNATURE_FIELD] = trust.sign(plain)
    write_json_atomic(path, plain)


def runs_dir_problem(runs_dir: Path) -> str | None:
    """Why no run folder can be made under `runs_dir` (a file, a device, below a file, a symlink loop, read-only), or None.

    Asked before anything trains, and leaves nothing behind: a folder that does not exist yet is
    not made; the deepest one that exists gets an empty folder made and removed in it, the one test
    that also holds for root (who may write anywhere but not into /proc).
    """
    path = Path(runs_dir)
    try:
        target = path.resolve()
    except (RuntimeError, OSError) as exc:  # pathlib's RuntimeError: a symlink loop
        return f"{path} cannot be resolved: {exc}"
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "a file" if existing.is_file() else "not a folder (a device, FIFO or socket)"
        return f"{path} is {what}" if existing == target else f"{existing} is {what}, so no folder can be made below it"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kerasrun-probe-", dir=existing))
    except OSError as exc:
        return f"no folder can be made in {existing}: {exc.strerror or exc}"
    return None


def create_run_dir(runs_dir: Path, name: str, now: datetime | None = None) -> Path:
    """Make `runs_dir/<YYYYmmdd-HHMMSS>-<name>[-N]`, never reusing an existing folder; ConfigError when it cannot be made."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as exc:  # what runs_dir_problem would have said, had the caller asked it
        raise ConfigError(Problem(key="output.runs_dir", message=runs_dir_problem(runs_dir) or f"cannot make {runs_dir}: {exc}")) from None
    stem = f"{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}-{name}"
    for n in range(1, 10_000):
        path = runs_dir / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()  # atomic: fails if another run took the name first
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(
                Problem(key="output.runs_dir", message=f"cannot make a run folder in {runs_dir}: {exc.strerror or exc}")
            ) from None
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
            # When the previous process stopped: `kerasrun runs` leaves the time between out of the run's duration.
            "previous_ended": info.get("ended") or info.get("heartbeat"),
            "command": command or sys.argv,
        }
        for stale in OUTCOME_FIELDS:  # what the previous process ended with; this one writes its own
            info.pop(stale, None)
        info.update(status="running", ended=None, **process_identity(), heartbeat=now_iso())
        info["resumes"] = [*info.get("resumes", []), resume]
        return cls(run_dir, info)

    def record_config(self, text: str) -> None:
        """Write config.yaml and bind it to this record's signature."""
        write_text_atomic(self.run_dir / CONFIG_FILE, text)
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
