"""Scratch folders (a non-chief worker's, a smoke run's): locked while their process lives, removed by the next start after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kerasrun.rundir import scratch
from kerasrun.rundir.scratch import WORKER_PREFIX, make_scratch, remove_scratch, remove_stale_scratch

HOLD = "import sys, time; from kerasrun.rundir.scratch import make_scratch; print(make_scratch(sys.argv[1]), flush=True); time.sleep(120)"


def holder(tmp: Path) -> tuple[subprocess.Popen, Path]:
    """A real process that made a worker scratch folder in `tmp` and keeps living; the folder."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    process = subprocess.Popen([sys.executable, "-c", HOLD, WORKER_PREFIX], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_killed_workers_folder_is_removed_and_a_live_ones_kept(tmp_path) -> None:
    alive, kept = holder(tmp_path)
    killed, left = holder(tmp_path)
    try:
        (left / "20261202-000000-run").mkdir()  # what a worker trains in
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert left.is_dir()  # kill -9: nobody removed it
        assert remove_stale_scratch(WORKER_PREFIX, tmp_path) == [left]
        assert not left.exists() and kept.is_dir()  # the living process's folder stays
    finally:
        alive.kill()
        alive.wait()
    assert remove_stale_scratch(WORKER_PREFIX, tmp_path) == [kept]


def test_a_new_scratch_folder_removes_the_dead_ones_first(tmp_path, monkeypatch) -> None:
    killed, left = holder(tmp_path)
    killed.kill()
    killed.wait()
    monkeypatch.setattr(scratch.tempfile, "tempdir", str(tmp_path))  # where make_scratch makes its folder and looks for leftovers
    folder = make_scratch(WORKER_PREFIX)
    try:
        assert not left.exists() and folder.parent == tmp_path
        assert remove_stale_scratch(WORKER_PREFIX, tmp_path) == []  # this process's own folder is alive
    finally:
        remove_scratch(folder)
    assert not folder.exists()


def test_a_folder_without_a_lock_is_left_alone_until_old(tmp_path) -> None:
    young = tmp_path / f"{WORKER_PREFIX}young"
    old = tmp_path / f"{WORKER_PREFIX}old"
    young.mkdir()
    old.mkdir()
    past = time.time() - scratch.UNLOCKED_GRACE_SECONDS - 60
    os.utime(old, (past, past))
    assert remove_stale_scratch(WORKER_PREFIX, tmp_path) == [old]  # the young one may be just being made
    assert young.is_dir()
