"""Progress as Keras callbacks: a Rich display on terminals, one plain or JSON line per epoch elsewhere."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

from kerasrun._tf import keras
from kerasrun.rundir.io import to_jsonable


def format_logs(logs: dict[str, Any]) -> str:
    """`loss 0.2921  accuracy 0.9140` with four significant decimals."""
    return "  ".join(f"{key} {float(value):.4f}" for key, value in logs.items())


class PlainProgress(keras.callbacks.Callback):
    """One line per epoch, no carriage returns: readable in CI logs and files."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream: TextIO | None = stream or sys.stdout
        self.started = 0.0

    def emit(self, line: str) -> None:
        """Print a line; if the reader has gone (`kerasrun train ... | head`), training goes on without progress."""
        if self.stream is None:
            return
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:
            if self.stream is sys.stdout:  # later output (and the interpreter's last flush) must not fail either
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.stream = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self.started
        epochs = self.params.get("epochs", "?")
        self.emit(f"epoch {epoch + 1}/{epochs}  {format_logs(logs or {})}  ({seconds:.1f}s)")


class JsonProgress(PlainProgress):
    """One JSON object per epoch, for machines."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        record = {
            "epoch": epoch + 1,
            **{k: float(v) for k, v in (logs or {}).items()},
            "seconds": round(time.perf_counter() - self.started, 3),
        }
        self.emit(json.dumps(to_jsonable(record)))


class RichProgress(keras.callbacks.Callback):
    """An epoch bar and a step bar with live metrics, steps/s and ETA; a line per finished epoch."""

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console

        self.console = console or Console()
        self.progress: Any = None
        self.epoch_task: Any = None
        self.step_task: Any = None
        self.started = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        epochs = self.params.get("epochs") or 1
        self.epoch_task = self.progress.add_task("epochs", total=epochs, rate="", metrics="")
        self.step_task = self.progress.add_task("steps", total=self.params.get("steps"), rate="", metrics="")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()
        self.progress.reset(self.step_task, total=self.params.get("steps"), description=f"epoch {epoch + 1}", rate="", metrics="")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        # With steps_per_execution, Keras reports the last step of a chunk, which can pass the epoch's end.
        done = min(batch + 1, self.params.get("steps") or batch + 1)
        self.progress.update(self.step_task, completed=done, rate=f"{done / elapsed:.0f} steps/s", metrics=format_logs(logs or {}))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.progress.advance(self.epoch_task)
        line = f"epoch {epoch + 1}/{self.params.get('epochs')}  {format_logs(logs or {})}  ({time.perf_counter() - self.started:.1f}s)"
        self.progress.console.print(line, highlight=False, markup=False)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.stop()

    def stop(self) -> None:
        """End the live display (also when training was interrupted, so later messages start on a line of their own)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def make_progress(mode: str, stream: TextIO | None = None) -> keras.callbacks.Callback | None:
    """The progress callback for a mode; `auto` is Rich on a terminal and plain lines otherwise; lines go to `stream` (stdout)."""
    if mode == "auto":
        mode = "rich" if (stream or sys.stdout).isatty() else "plain"
    if mode == "rich":
        return RichProgress()
    lines = {"plain": PlainProgress, "json": JsonProgress}.get(mode)
    return lines(stream) if lines is not None else None
