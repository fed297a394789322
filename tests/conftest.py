"""Fixtures: small configs written to temp files, the CLI runner, a runs folder, the real data folder, a signing key."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SHARED_DATA, TINY, merge
from typer.testing import CliRunner


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
