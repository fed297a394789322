"""`kerasrun train CONFIG --smoke` passes for every file in configs/ (new configs are covered automatically)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import HAS_MNIST, REPO, only_run

from kerasrun.cli import app
from kerasrun.rundir import read_json

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def needs_network_data(path: Path) -> bool:
    """Configs that read a keras dataset need the shared data folder here (no network)."""
    return yaml.safe_load(path.read_text())["data"]["source"] == "keras"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_smoke(runner, runs_dir, mnist_env, path: Path) -> None:
    if needs_network_data(path) and not HAS_MNIST:
        pytest.skip("real MNIST not present")
    result = runner.invoke(app, ["train", str(path), "--smoke", "--runs-dir", str(runs_dir), "--progress", "plain"])
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    assert read_json(run / "run.json")["status"] == "completed"
    assert read_json(run / "history.json")["epoch"] == [1]
    assert (run / "model.keras").is_file()


def test_configs_folder_is_not_empty() -> None:
    assert {"digits_mlp", "mnist_mlp", "mnist_cnn", "mnist_class_weight", "linear_classifier"} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_key_is_commented(path: Path) -> None:
    """Each config explains itself: the file opens with a comment and most lines carry one."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines[0].startswith("#")
    commented = sum("#" in line for line in lines)
    assert commented / len(lines) > 0.4, f"{path.name}: only {commented} of {len(lines)} lines carry a comment"
