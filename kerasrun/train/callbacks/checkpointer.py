"""The `Checkpointer` callback: a checkpoint every `output.checkpoint.every` epochs, at the last one and on an early stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasrun._tf import keras
from kerasrun.rundir.checkpoints import TrainingState, write
from kerasrun.rundir.io import is_finite
from kerasrun.train.checkpoint import CallbackStates, capture
from kerasrun.train.metric_state import capture_metrics


class Checkpointer(keras.callbacks.Callback):
    """Writes a checkpoint every `every` epochs, at the last one and when training stops early.

    It must come after every callback whose state it saves (they update it in on_epoch_end) and after
    the history writer.
    """

    def __init__(  # `variables` is called at each capture: a subclassed model's optimizer exists only after the first step
        self,
        run_dir: Path,
        variables: Callable[[], dict[str, list[Any]]],
        callbacks: CallbackStates,
        history: Any,
        every: int,
        keep: int,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.variables = variables
        self.stateful = callbacks
        self.history_writer = history
        self.every = every
        self.keep = keep
        self.pending: TrainingState | None = None  # captured at the last epoch end but not yet written
        self.last_written: int | None = None  # complete epochs of the newest checkpoint written
        self.last_step = 0  # and steps of the next epoch, for a mid-epoch one
        self.seconds = 0.0  # spent capturing and writing, for run.json's timings (checkpoint_s)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not is_finite((logs or {}).get("loss", 0.0)):
            return  # a diverged epoch is not worth resuming from
        start = time.perf_counter()
        self.pending = capture(self.variables(), self.stateful, self.history_writer.history, epoch + 1)
        self.pending.meta["stopped"] = bool(self.model.stop_training)  # e.g. EarlyStopping: no epochs are left
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every == 0 or last or self.model.stop_training:
            self.flush()
        self.seconds += time.perf_counter() - start

    def flush(self) -> Path | None:
        """Write the captured state if it hasn't been (also called when the run is interrupted)."""
        if self.pending is None:
            return None
        path = write(self.run_dir, self.pending, self.keep)
        self.last_written, self.last_step, self.pending = self.pending.epoch, 0, None
        return path

    def save_mid_epoch(self, epoch: int, step: int, metrics: list[Any], strategy: Any) -> Path:
        """Write a checkpoint inside epoch `epoch` after `step` of its steps, with the epoch's running metric states."""
        start = time.perf_counter()
        state = capture(self.variables(), self.stateful, self.history_writer.history, epoch, step)
        capture_metrics(state, metrics, strategy)
        path = write(self.run_dir, state, self.keep)
        self.pending = None  # an earlier epoch's capture: this one is newer
        self.last_written, self.last_step = epoch, step
        self.seconds += time.perf_counter() - start
        return path
