"""Writing a run folder's files atomically (temp file + fsync + rename) and reading its JSON."""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from kerasrun.errors import ConfigError, Problem


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


def is_finite(value: Any) -> bool:
    """True when a log value is a finite number (or not a number at all): what history.json keeps as the epoch's value."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


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


class RunFileError(ConfigError):
    """A file of a run folder cannot be read or is not what kerasrun writes."""


def read_json(path: Path) -> Any:
    """A JSON file's value: the one reader of a run folder's JSON; RunFileError when it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise RunFileError(Problem(key="", message="missing", file=str(path))) from None
    except OSError as exc:
        raise RunFileError(Problem(key="", message=f"cannot be read: {exc.strerror}", file=str(path))) from None
    except ValueError as exc:
        raise RunFileError(Problem(key="", message=f"is not valid JSON: {exc}", file=str(path))) from None
