"""The running metric states of a partial epoch, for a mid-epoch checkpoint: captured per replica, restored per replica.

An epoch's logs are the metrics' states at its end (totals and counts, confusion counts, ...), summed over
replicas when they are read. A run resumed in the middle of an epoch must continue from exactly the
states each replica had: the sum of one replica holding everything and the others nothing would be
the same number only up to rounding. Under a strategy every replica's states are gathered (one
all-gather, which every worker runs at the same agreed step), so the chief's checkpoint holds all of
them, and each replica takes its own row back on resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasrun._tf import tf
from kerasrun.errors import RunFailedError
from kerasrun.rundir.checkpoints import TrainingState, variable_name

GROUP = "metrics"


def capture_metrics(state: TrainingState, variables: list[Any], strategy: Any) -> None:
    """Put the metric variables' values into `state`: arrays of shape [replicas, *shape], replicas in tf.distribute's order."""
    state.meta[GROUP] = [variable_name(v) for v in variables]
    for index, value in enumerate(read_per_replica(variables, strategy)):
        state.arrays[f"{GROUP}/{index:05d}"] = value


def restore_metrics(state: TrainingState, variables: list[Any], strategy: Any) -> None:
    """Give each replica its own saved metric states (after the epoch's reset, before its first step)."""
    saved = state.meta.get(GROUP)
    if saved is None:
        raise RunFailedError(f"the checkpoint at {state.where} holds no metric states: it was not written mid-epoch")
    names = [variable_name(v) for v in variables]
    if saved != names:
        raise RunFailedError(
            f"the checkpoint's metrics ({', '.join(saved)}) differ from the run's ({', '.join(names)}): was compile changed?"
        )
    values = [state.arrays[f"{GROUP}/{index:05d}"] for index in range(len(variables))]
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if any(len(value) != replicas for value in values):
        raise RunFailedError(f"the checkpoint holds metric states of {len(values[0])} replicas, this run has {replicas}")
    if strategy is None:
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value[0])
        return
    rows = [tf.constant(value) for value in values]

    def assign_own_row() -> None:
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        for variable, row in zip(variables, rows, strict=True):
            variable.assign(tf.gather(row, replica))

    tf.function(lambda: strategy.run(assign_own_row), autograph=False)()


def read_per_replica(variables: list[Any], strategy: Any) -> list[np.ndarray]:
    """Each variable's value on every replica, stacked: one row without a strategy."""
    if strategy is None:
        return [np.asarray(v.numpy())[None] for v in variables]

    def gather_all() -> list[Any]:
        context = tf.distribute.get_replica_context()
        return [context.all_gather(tf.expand_dims(tf.convert_to_tensor(v), 0), axis=0) for v in variables]

    gathered = tf.function(lambda: strategy.run(gather_all), autograph=False)()
    return [np.asarray(strategy.experimental_local_results(value)[0]) for value in gathered]
