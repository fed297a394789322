"""Save on preemption: a stop signal during training becomes a checkpoint at a step every worker agrees on, then a clean stop.

Slurm and Kubernetes send SIGTERM and wait a grace period (~30 s) before killing. Without this, kerasrun
would stop at once and lose the epoch in progress. With a checkpoint configured, a stop signal that
arrives while training steps run is only noted (signals.deferred_to); after the next compiled call
(after each batch in fit) the run writes a mid-epoch checkpoint (`epoch-NNNN-step-SSSSSS.npz`: weights,
optimizer, random states, callback states and the epoch's running metric states) and raises
Interrupted as before, so run.json says `interrupted` and the process exits 128 + signal (143 for
SIGTERM), a failure code that `restartPolicy: OnFailure` and Slurm's requeue restart on. A signal at an
epoch's end (or during the epoch's last call) is taken at the epoch's end, with the epoch's own checkpoint;
one that comes during validation, on one process, at once (the epoch in progress is lost, as without
this: validation can outlast the grace period).

Under multi-worker every worker must checkpoint at the same step, or their collectives would hang: the
agreement is TensorFlow's own PreemptionCheckpointHandler protocol (the signalled worker publishes the
step through the coordination service, every worker acknowledges and saves there), with kerasrun's
checkpoint as its `save_fn` and Interrupted as its `exit_fn`. On one process no agreement is needed.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kerasrun._tf import keras, tf
from kerasrun.train.signals import Interrupted, deferred_to

# (epoch, steps of it done) for a mid-epoch checkpoint; (epoch, None) at the end of epoch `epoch`.
Position = tuple[int, int | None]


class Preemption:
    """Turns a stop signal noted during training into a checkpoint at an agreed position, then Interrupted."""

    def __init__(self, save: Callable[[int, int | None], object], cluster_resolver: Any = None, scratch: Path | None = None) -> None:
        self.save = save  # writes the checkpoint for a position (every worker calls it at the same one)
        self.signum: int | None = None
        self.position: Position | None = None
        self.handler: Any = None
        self.defers = True  # False: a stop signal raises at once, as without a checkpoint
        self.waiting_at_validation = False  # a signal was waiting when the current validation began
        if cluster_resolver is not None and cluster_resolver.cluster_spec().jobs:
            self.handler = agreement_handler(self, cluster_resolver, scratch or Path("."))
            # On GCP CPU and TPU VMs TensorFlow's handler does nothing: without an agreed step, stop at once.
            self.defers = getattr(self.handler, "_platform_device", None) not in unsupported_platforms()

    def notice(self, signum: int) -> None:
        """The signal handler's deferral: remember the signal, act on it at the next check."""
        self.signum = signum

    def check(self, epoch: int, step: int | None) -> None:
        """After a training call (`step` steps of `epoch` done) or at the epoch's end (None): checkpoint and stop if asked to."""
        if self.handler is None:
            if self.signum is not None:
                self.save(epoch, step)
                raise Interrupted(self.signum)
            return
        self.position = (epoch, step)
        self.handler.save_checkpoint_if_preempted()  # counts this call; saves and exits at the agreed one

    def save_agreed(self) -> None:
        """The handler's save_fn: the checkpoint at the position every worker has reached."""
        assert self.position is not None
        self.save(*self.position)

    def exit_agreed(self) -> None:
        """The handler's exit_fn: stop as a signal would (a worker that was not signalled stops with its peers)."""
        raise Interrupted(self.signum if self.signum is not None else signal.SIGTERM)

    def validation_begins(self) -> None:
        """Validation inside training starts: a signal already waiting (it came during the epoch's last call) waits for the epoch's end."""
        self.waiting_at_validation = self.signum is not None

    def during_validation(self) -> None:
        """A signal that came during validation, on one process: stop at once (the epoch's checkpoint could come too late)."""
        if self.handler is None and self.signum is not None and not self.waiting_at_validation:
            raise Interrupted(self.signum)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While training runs, stop signals wait for the next check; one that came after the last check stops the run at the block's end.

        A sweep's pruning (an Interrupted of another status) that ends training while a signal waits
        becomes the signal's stop: the sweep must stop too, not go on to its next trial.
        """
        if not self.defers:
            yield
            return
        try:
            with deferred_to(self.notice):
                yield
        except Interrupted as exc:
            if self.signum is not None and exc.status != Interrupted.status:
                raise Interrupted(self.signum) from exc
            raise
        if self.signum is not None:
            raise Interrupted(self.signum)


def unsupported_platforms() -> tuple[Any, ...]:
    """The platforms where TensorFlow's PreemptionCheckpointHandler does nothing (GCP's CPU and TPU VMs)."""
    from tensorflow.python.distribute.failure_handling import failure_handling_util  # no public name for the platforms

    return (failure_handling_util.PlatformDevice.GCE_CPU, failure_handling_util.PlatformDevice.GCE_TPU)


def agreement_handler(preemption: Preemption, cluster_resolver: Any, scratch: Path) -> Any:
    """TensorFlow's PreemptionCheckpointHandler for the cluster, saving and exiting through `preemption`.

    It needs a tf.train checkpoint to count its calls in; kerasrun's own checkpoint is its save_fn, so
    that one is an empty checkpoint in a scratch folder, never written. Given a manager (not a
    checkpoint), the handler leaves the folder alone on exit.
    """
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), directory=str(scratch / "preemption"), max_to_keep=1)
    config = tf.distribute.experimental.TerminationConfig(
        termination_watcher_fn=lambda: preemption.signum is not None,  # polled every second by the handler's thread
        exit_fn=preemption.exit_agreed,
        grace_period=0,  # checkpoint at the agreed step, then stop: the platform's grace period is short
        save_fn=preemption.save_agreed,
    )
    return tf.distribute.experimental.PreemptionCheckpointHandler(cluster_resolver, manager, termination_config=config)


class PreemptionCheck(keras.callbacks.Callback):
    """Calls `Preemption.check` after every training call and at every epoch's end; the last of a run's callbacks.

    A call that ends the epoch leaves the check to the epoch's end, where the epoch's own checkpoint is
    taken after validation.
    """

    def __init__(self, preemption: Preemption) -> None:
        super().__init__()
        self.preemption = preemption
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        done, steps = batch + 1, self.params.get("steps")
        if steps and done >= steps:
            return
        self.preemption.check(self.epoch, done)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.preemption.validation_begins()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.preemption.during_validation()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.preemption.check(epoch, None)


class ResumeMidEpoch(keras.callbacks.Callback):
    """On resume from a mid-epoch checkpoint: once the epoch has begun (metrics reset, callbacks' on_epoch_begin run), put back its state.

    `restore` gives the metrics their running states and the callbacks the states they had at the
    checkpoint's step; it runs once, at the checkpoint's epoch.
    """

    def __init__(self, epoch: int, restore: Callable[[], None]) -> None:
        super().__init__()
        self.epoch = epoch
        self.restore = restore
        self.done = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch == self.epoch and not self.done:
            self.done = True
            self.restore()
