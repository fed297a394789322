"""Scratch folders: where a multi-worker run's other workers (and a smoke run) train, a launch keeps its logs; removed at the end or by the next start.

A scratch folder holds a `.scratch.lock` that its process keeps locked (flock) for as long as it lives; the
kernel drops the lock with the process, even after `kill -9`. So each new scratch folder first
removes those of the same kind whose lock nobody holds: what killed workers left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

WORKER_PREFIX = "kerasrun-worker-"  # a non-chief worker's run folder
SMOKE_PREFIX = "kerasrun-smoke-"  # `kerasrun train --smoke` without --runs-dir
LAUNCH_PREFIX = "kerasrun-launch-"  # `kerasrun launch`'s own: the workers' logs until the run folder is known
LOCK_FILE = ".scratch.lock"  # not the run folder's own .lock: a run folder may be made inside
# A folder without a lock file is being made right now (mkdtemp, then the lock), or was made by a kerasrun
# that did not lock them: only once it is this old is it taken for a leftover.
UNLOCKED_GRACE_SECONDS = 600.0
held: dict[Path, int] = {}  # this process's scratch folders and their lock file descriptors


def make_scratch(prefix: str) -> Path:
    """A new scratch folder in the temp directory, locked by this process; the dead processes' leftovers of `prefix` removed first."""
    remove_stale_scratch(prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a folder made a moment ago: nobody else holds it
    held[folder] = fd
    return folder


def remove_scratch(folder: Path) -> None:
    """Remove one of this process's scratch folders and let go of its lock."""
    shutil.rmtree(folder, ignore_errors=True)
    fd = held.pop(Path(folder), None)
    if fd is not None:
        os.close(fd)


def remove_stale_scratch(prefix: str, base: Path | None = None) -> list[Path]:
    """Remove the scratch folders of `prefix` in `base` (default: the temp directory) whose process is gone; return them."""
    base = Path(base) if base is not None else Path(tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for folder in base.glob(f"{prefix}*"):
            if folder.is_dir() and not folder.is_symlink() and folder not in held and abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def abandoned(folder: Path) -> bool:
    """Whether no live process holds the scratch folder's lock (a folder without one: when it is old)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        try:
            return time.time() - folder.stat().st_mtime > UNLOCKED_GRACE_SECONDS
        except OSError:
            return False
    except OSError:  # another user's folder, say: not ours to judge
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: its process is alive
        return False
    finally:
        os.close(fd)
    return True
