"""Writing a run folder's files atomically (temp file + fsync + rename) and reading its JSON."""

from __future__ import annotations

import functools
import json
import math
import os
import stat
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


MAX_FILE_BYTES = 256 * 2**20  # a run folder's JSON or YAML: a 100,000-epoch history is ~50 MB; more is not kerasrun's
MAX_JSON_DEPTH = 64  # nesting levels; kerasrun writes at most ~6 (run.json's placement, a history of lists)


def present(path: Path) -> bool:
    """Whether a run folder has this file at all, whatever it is (a FIFO or a dangling link is there, and unreadable)."""
    return path.exists() or path.is_symlink()


def read_run_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a run folder's file: a regular file only (a FIFO, device or folder is refused unread), at most `limit` bytes.

    Opened without blocking (a FIFO's open would wait for a writer) and checked with fstat on the
    very file opened, so a file swapped after the check is not read either; RunFileError otherwise.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RunFileError(Problem(key="", message="missing", file=str(path))) from None
    except OSError as exc:
        raise RunFileError(Problem(key="", message=f"cannot be read: {exc.strerror or exc}", file=str(path))) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RunFileError(
                Problem(key="", message=f"cannot be read: it is {file_kind(info.st_mode)}, not a regular file", file=str(path))
            )
        if info.st_size > limit:
            raise RunFileError(
                Problem(
                    key="", message=f"cannot be read: it is {info.st_size / 2**20:.0f} MB (limit: {limit / 2**20:.0f} MB)", file=str(path)
                )
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)  # bounded even if the file grows while it is read
    except OSError as exc:
        raise RunFileError(Problem(key="", message=f"cannot be read: {exc.strerror or exc}", file=str(path))) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RunFileError(Problem(key="", message=f"cannot be read: it grew past {limit / 2**20:.0f} MB while read", file=str(path)))
    return data


def file_kind(mode: int) -> str:
    """`a FIFO`, `a folder`, `a device`, … for a file that is not a regular one."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def not_regular(path: str | Path) -> str | None:
    """Why `path` (links followed) is not a regular file a reader can open and read to its end, or None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot be opened: {exc.strerror or exc}"  # a dangling link, a link loop (ELOOP)
    return None if stat.S_ISREG(mode) else file_kind(mode)


def json_depth_over(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than `limit` (iteratively: a deep value must not exhaust the stack here either)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def read_json(path: Path) -> Any:
    """A JSON file's value: the one reader of a run folder's JSON; RunFileError when it is missing, not a regular file,
    too big, nested too deep or not JSON."""
    data = read_run_file(path)
    try:
        value = json.loads(data)
    except RecursionError:
        value = None
        deep = True
    except ValueError as exc:
        raise RunFileError(Problem(key="", message=f"is not valid JSON: {exc}", file=str(path))) from None
    else:
        deep = json_depth_over(value, MAX_JSON_DEPTH)
    if deep:
        raise RunFileError(
            Problem(key="", message=f"is not a file kerasrun wrote: JSON nested more than {MAX_JSON_DEPTH} levels deep", file=str(path))
        )
    return value
