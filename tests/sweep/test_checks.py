"""What a sweep refuses before training: degenerate spaces."""

from __future__ import annotations

from pathlib import Path

from helpers import write_tiny
from typer.testing import CliRunner, Result

from kerasrun.cli import app

LR = "compile.optimizer.Adam.learning_rate"


def sweep(*args: str) -> Result:
    """`kerasrun sweep ARGS` in-process."""
    return CliRunner().invoke(app, ["sweep", *args])


def test_degenerate_spaces_are_refused_at_their_option(tmp_path: Path) -> None:
    config = write_tiny(tmp_path)
    runs = tmp_path / "runs"
    twice = sweep(str(config), "--grid", "train.epochs=3,3", "--grid", f"{LR}=0.001,1.0e-3", "--runs-dir", str(runs))
    assert twice.exit_code == 2 and "2 problems found" in twice.output, twice.output
    assert "--grid: train.epochs: `3` is listed twice" in twice.output
    assert f"--grid: {LR}: `0.001` and `1.0e-3` are the same value" in twice.output
    space = ["--space", "train.batch_size=choice(32)", "--space", "train.epochs=int(16,16)", "--space", "seed=choice(1,2,1)"]
    single = sweep(str(config), "--random", "3", *space, "--runs-dir", str(runs))
    assert single.exit_code == 2 and "3 problems found" in single.output, single.output
    for key, value in (("train.batch_size", "32"), ("train.epochs", "16")):
        assert f"--space: {key}: " in single.output and f"use --set {key}={value} for a fixed value" in single.output
    assert "a single value is not a search" in single.output and "--space: seed: `1` is listed twice" in single.output
    reversed_range = sweep(str(config), "--random", "3", "--space", "train.epochs=int(16,8)")
    assert reversed_range.exit_code == 2 and "expected finite numbers with low < high" in reversed_range.output
    assert not runs.exists()
