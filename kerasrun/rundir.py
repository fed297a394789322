"""The run folder: created fresh (never overwriting), every file written atomically."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kerasrun

RUN_FILE = "run.json"


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


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, then rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON atomically (NaN/inf as null)."""
    write_text_atomic(path, json.dumps(to_jsonable(value), indent=2, allow_nan=False) + "\n")


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


class RunRecord:
    """`run.json`: status and facts of one run, rewritten atomically on every change."""

    def __init__(self, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.info = info
        self.save()

    @classmethod
    def start(
        cls, run_dir: Path, *, seed: int, device: str, versions: dict[str, str], command: list[str] | None, **extra: Any
    ) -> RunRecord:
        """Create run.json with status `running`."""
        return cls(
            run_dir,
            {
                "status": "running",
                "started": now_iso(),
                "ended": None,
                "command": command if command is not None else sys.argv,
                "seed": seed,
                "device": device,
                **extra,
                "environment": environment_info(versions),
            },
        )

    def update(self, **fields: Any) -> None:
        """Change fields and rewrite run.json."""
        self.info.update(fields)
        self.save()

    def finish(self, status: str, **fields: Any) -> None:
        """Record the final status and end time."""
        self.update(status=status, ended=now_iso(), **fields)

    def save(self) -> None:
        """Write run.json atomically."""
        write_json_atomic(self.run_dir / RUN_FILE, self.info)
