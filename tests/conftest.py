"""Fixtures: small configs written to temp files, the CLI runner, a runs folder, the real data folder, a signing key, PostgreSQL."""

from __future__ import annotations

import faulthandler
import functools
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.testing
import yaml
from helpers import SHARED_DATA, TINY, merge, train
from postgres import postgres_url  # noqa: F401  (a fixture: pytest finds it here, in every test folder)
from typer.testing import CliRunner

# Typer's CliRunner turns the app into a click command on every invoke (~30 ms of signature and annotation
# reading, more than a `validate` takes); kerasrun's app is complete at import, so one command serves every test.
typer.testing._get_command = functools.cache(typer.testing._get_command)

GUARD_SECONDS = 180  # far above any case's time: only a hang gets here, and then the worker is stopped with every stack dumped


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config (dict merged into TINY, or raw YAML text) to a temp file and return its path."""

    def write(changes: dict[str, Any] | str | None = None, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if isinstance(changes, str):
            path.write_text(textwrap.dedent(changes))
        else:
            path.write_text(yaml.safe_dump(merge(TINY, changes or {}), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def kerasrun_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A signing key of the test session's own, not the user's ~/.config/kerasrun (subprocesses inherit it)."""
    home = tmp_path_factory.mktemp("kerasrun-home")
    os.environ["KERASRUN_HOME"] = str(home)
    return home


@pytest.fixture
def runner() -> CliRunner:
    """Typer's CLI runner."""
    return CliRunner()


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """An empty folder for run folders."""
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def mnist_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point kerasrun at the real MNIST in ../shared/data."""
    monkeypatch.setenv("KERASRUN_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture
def guard() -> Iterator[None]:
    """A hang ends the test process after GUARD_SECONDS, every thread's stack dumped (pytest-xdist reports the crash)."""
    faulthandler.dump_traceback_later(GUARD_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed tiny run (1 epoch), trained once per test module."""
    base = tmp_path_factory.mktemp("good")
    config = base / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 1}}, sort_keys=False))
    result = train(CliRunner(), config, base / "runs")
    assert result.exit_code == 0, result.output
    return next((base / "runs").iterdir())


@pytest.fixture(autouse=True)
def no_debug_left_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kerasrun --debug` run in this process sets KERASRUN_DEBUG for good: undo it after each test, or later subprocesses print TensorFlow's start-up."""
    monkeypatch.delenv("KERASRUN_DEBUG", raising=False)
