"""Shared fixtures: small configs written to temp files, the CLI runner, the real data folder."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KERASRUN_TEST_DATA", REPO.parent / "shared" / "data"))
HAS_MNIST = (SHARED_DATA / "mnist.npz").is_file()
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=f"real MNIST not found at {SHARED_DATA}/mnist.npz")

# A tiny, fast experiment: 3 Gaussian classes, 2 features, one hidden layer.
TINY = {
    "name": "tiny",
    "seed": 7,
    "data": {
        "source": "synthetic",
        "generator": "blobs",
        "means": [[0, 0], [4, 0], [0, 4]],
        "cov": [[1, 0], [0, 1]],
        "samples_per_class": 100,
        "test_fraction": 0.2,
    },
    "model": {
        "inputs": {"x": [2]},
        "layers": [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}],
    },
    "compile": {
        "optimizer": {"Adam": {"learning_rate": 0.01}},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["sparse_categorical_accuracy"],
    },
    # The blobs come sorted by class, so a last-fraction split would validate on one class only.
    "train": {"epochs": 3, "batch_size": 16, "validation_split": 0.25, "stratify": True},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Merge `changes` into a copy of `base`, one level into each section (a None value deletes the key)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            for sub_key, sub_value in value.items():
                if sub_value is None:
                    out[key].pop(sub_key, None)
                else:
                    out[key][sub_key] = sub_value
        else:
            out[key] = value
    return out


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


def only_run(runs_dir: Path) -> Path:
    """The single run folder under runs_dir."""
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]
