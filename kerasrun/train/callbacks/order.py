"""The one order of a run's callbacks: the user's, then kerasrun's own, each placed where what it reads is ready."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunCallbacks:
    """Every callback of a run, by role; `ordered()` is the list both loops drive, in the order the fields stand here."""

    user: list[Any]  # train.callbacks, as the config lists them
    # On resume: after the user's callbacks reset themselves in on_train_begin, put back their checkpointed state.
    restore: Any | None
    clock: Any  # the epoch the input pipelines read: set before the epoch's first batch is drawn
    guard: Any  # DivergenceGuard: stops on a NaN/inf loss before the history or a checkpoint takes the epoch
    history: Any  # HistoryWriter: history.json, before the checkpoint that copies the history so far
    tensorboard: Any | None = None  # output.tensorboard
    mlflow: Any | None = None  # output.mlflow, after the history it logs
    # After every callback whose state it saves (they update it in on_epoch_end) and after the history writer.
    checkpointer: Any | None = None
    progress_record: Any | None = None  # run.json's epochs_completed, once the epoch is in history and checkpoint
    display: Any | None = None  # the progress bar or lines
    extra: list[Any] = field(default_factory=list)  # e.g. a sweep's pruning: sees the epoch already recorded and checkpointed
    # Last: a stop signal is taken once every callback is done with the batch or epoch (the epoch's checkpoint is written).
    preemption: Any | None = None
    # Last too: a mid-epoch resume puts the callbacks' states back after their own on_epoch_begin ran.
    resume_mid_epoch: Any | None = None

    def ordered(self) -> list[Any]:
        """The callbacks in the order Keras calls them."""
        roles = [self.restore, self.clock, self.guard, self.history, self.tensorboard, self.mlflow]
        roles += [self.checkpointer, self.progress_record, self.display]
        last = [cb for cb in (self.resume_mid_epoch, self.preemption) if cb is not None]
        return [*self.user, *(cb for cb in roles if cb is not None), *self.extra, *last]
