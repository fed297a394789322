"""`kerasrun train CONFIG --smoke` passes for every file in configs/ (new configs are covered automatically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import HAS_MNIST, REPO, write_heart_csv
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.compose import read_config_file
from kerasrun.rundir.io import read_json

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def needs_network_data(path: Path) -> bool:
    """Configs that read a keras dataset need the shared data folder here (no network)."""
    return raw(path)["data"]["source"] == "keras"


def raw(path: Path) -> dict[str, Any]:
    """The config as written, with its bases (extends) merged in."""
    return read_config_file(path)[0]


def smoke(runner: CliRunner, path: Path, runs_dir: Path) -> Path:
    """`kerasrun train PATH --smoke` into runs_dir, after the config whose run it starts from (model.init_from.run)."""
    init_from = raw(path)["model"].get("init_from")
    if isinstance(init_from, dict) and init_from.get("run"):
        smoke(runner, next(p for p in CONFIGS if raw(p)["name"] == init_from["run"]), runs_dir)
    result = runner.invoke(app, ["train", str(path), "--smoke", "--runs-dir", str(runs_dir), "--progress", "plain"])
    assert result.exit_code == 0, result.output
    return Path(next(line.split()[1] for line in result.output.splitlines() if line.startswith("done: ")))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_smoke(runner, runs_dir, mnist_env, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if needs_network_data(path) and not HAS_MNIST:
        pytest.skip("real MNIST not present")
    monkeypatch.setenv("HEART_CSV", str(write_heart_csv(tmp_path / "heart.csv")))  # heart_structured_csv's data (keras.io downloads it)
    run = smoke(runner, path, runs_dir)
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
