"""The run folder: unique names, atomic JSON, NaN/inf as null."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from kerasrun.rundir import io as run_io
from kerasrun.rundir import record
from kerasrun.rundir.io import read_json, to_jsonable, write_json_atomic
from kerasrun.rundir.record import create_run_dir


def test_run_dirs_are_never_reused(tmp_path) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5)
    first = create_run_dir(tmp_path, "exp", now)
    second = create_run_dir(tmp_path, "exp", now)
    third = create_run_dir(tmp_path, "exp", now)
    assert [p.name for p in (first, second, third)] == ["20260102-030405-exp", "20260102-030405-exp-2", "20260102-030405-exp-3"]


def test_json_values_are_plain(tmp_path) -> None:
    value = {"a": [1.0, float("nan"), float("inf")], "b": np.float32(0.5), "c": np.arange(2)}
    assert to_jsonable(value) == {"a": [1.0, None, None], "b": 0.5, "c": [0, 1]}
    write_json_atomic(tmp_path / "x.json", value)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1.0, None, None], "b": 0.5, "c": [0, 1]}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch) -> None:
    path = tmp_path / "history.json"
    write_json_atomic(path, {"epoch": [1]})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(run_io.os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_json_atomic(path, {"epoch": [1, 2]})
    assert read_json(path) == {"epoch": [1]}
    assert os.listdir(tmp_path) == ["history.json"]  # the temp file was cleaned up


def test_git_commit_outside_a_repo(tmp_path) -> None:
    assert record.git_commit(tmp_path) is None


def test_runs_dir_problem_leaves_nothing_behind(tmp_path: Path) -> None:
    runs_dir_problem = record.runs_dir_problem
    (tmp_path / "runs").mkdir()
    assert runs_dir_problem(tmp_path / "runs") is None and list((tmp_path / "runs").iterdir()) == []  # the probe folder is gone
    assert runs_dir_problem(tmp_path / "new" / "runs") is None and not (tmp_path / "new").exists()  # not made before training
    (tmp_path / "file").write_text("x")
    assert runs_dir_problem(tmp_path / "file" / "deeper" / "runs") == f"{tmp_path / 'file'} is a file, so no folder can be made below it"
