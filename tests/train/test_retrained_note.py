"""An interruption after an epoch's history but before its checkpoint: the message says resume trains that epoch again."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from helpers import only_run, train
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.cli.render import retrained_epochs
from kerasrun.train.callbacks.checkpointer import Checkpointer
from kerasrun.train.signals import Interrupted


def said(text: str, output: str) -> bool:
    """Whether the command output holds `text`, however the console wrapped it (whitespace ignored)."""
    return "".join(text.split()) in "".join(output.split())


def test_an_epoch_past_the_newest_checkpoint_is_named_on_interruption_and_on_resume(
    write_config, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = Checkpointer.on_epoch_end

    def stopped_at_the_second_epoch_end(self: Checkpointer, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # SIGTERM as its handler raises it, after history.json has epoch 2 and before its checkpoint is captured. (A real
        # signal would arm the watchdog, which ends the process that received it: here, pytest's.)
        if epoch == 1:
            raise Interrupted(signal.SIGTERM)
        capture(self, epoch, logs)

    monkeypatch.setattr(Checkpointer, "on_epoch_end", stopped_at_the_second_epoch_end)
    result = train(runner, write_config({}), tmp_path / "runs")
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    run = only_run(tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["epochs_completed"], info["checkpoint_epoch"]) == ("interrupted", 2, 1)
    assert said(f"interrupted (SIGTERM); {run} is marked interrupted", result.output)
    assert said("note: epoch 2 ran after the newest checkpoint (epoch 1) and will be trained again by `kerasrun resume`", result.output)

    monkeypatch.setattr(Checkpointer, "on_epoch_end", capture)
    resumed = runner.invoke(app, ["resume", str(run), "--progress", "none"])
    assert resumed.exit_code == 0, resumed.output
    assert said("note: epoch 2 ran after the newest checkpoint (epoch 1) and will be trained again", resumed.output)
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 3


def test_an_interruption_at_a_checkpoint_says_nothing_is_trained_again() -> None:
    assert retrained_epochs(2, 0) is None
    assert retrained_epochs(1, 3) == "epochs 2-4 ran after the newest checkpoint (epoch 1) and will be trained again"
