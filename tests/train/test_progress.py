"""Progress callbacks: Rich on terminals, plain and JSON lines elsewhere."""

from __future__ import annotations

import io
import json

from rich.console import Console

from kerasrun.train.callbacks.progress import JsonProgress, PlainProgress, RichProgress, make_progress


def drive(callback, epochs: int = 2, steps: int = 3) -> None:
    """Call a callback the way model.fit does."""
    callback.set_params({"epochs": epochs, "steps": steps, "verbose": 0})
    callback.on_train_begin()
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        for step in range(steps):
            callback.on_train_batch_end(step, {"loss": 1.0 / (step + 1), "accuracy": 0.5})
        callback.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 0.75, "val_loss": 0.5})
    callback.on_train_end()


def test_plain_lines() -> None:
    stream = io.StringIO()
    drive(PlainProgress(stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  loss 0.2500  accuracy 0.7500  val_loss 0.5000")
    assert "\r" not in stream.getvalue()


def test_json_lines() -> None:
    stream = io.StringIO()
    drive(JsonProgress(stream))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[0]["val_loss"] == 0.5 and "seconds" in records[0]


def test_rich_display_on_a_terminal() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160)
    drive(RichProgress(console))
    text = stream.getvalue()
    assert "epoch 2/2  loss 0.2500" in text and "steps/s" in text and "epochs" in text
    assert "3/3" in text and "4/3" not in text


def test_rich_step_count_never_passes_the_epoch_end() -> None:
    stream = io.StringIO()
    callback = RichProgress(Console(file=stream, force_terminal=True, width=160))
    callback.set_params({"epochs": 1, "steps": 782, "verbose": 0})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_train_batch_end(799, {"loss": 0.5})  # steps_per_execution=32 reports the chunk's last step
    assert callback.progress.tasks[1].completed == 782
    callback.on_train_end()


def test_auto_is_plain_off_a_terminal() -> None:
    assert isinstance(make_progress("auto"), PlainProgress)  # pytest captures stdout: not a terminal
    assert make_progress("none") is None
