"""The processes that read one data set together under a multi-worker strategy: who this one is, and a sum over all of them.

A reader that checks its files can split that work between the workers (each checks some of the
files) and combine what they found with `Peers.sum`, an all-reduce through the strategy's own
collectives. Every worker must call it the same number of times, in the same order: the readers
do, because every worker reads the same config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Peers:
    """This process's place among the workers reading the data (input pipeline `index` of `count`)."""

    index: int = 0
    count: int = 1
    sum: Callable[[np.ndarray], np.ndarray] = field(default=lambda vector: vector)  # element-wise int64 sum over the workers


ALONE = Peers()


def strategy_peers(strategy: Any, index: int, count: int) -> Peers:
    """The workers of a MultiWorkerMirroredStrategy; `index` is this worker's input pipeline id (the chief's is 0)."""
    from kerasrun._tf import tf

    per_worker = strategy.num_replicas_in_sync // count  # replicas on each worker (its GPUs, or its one CPU)

    @tf.function  # traced, not eager: MultiWorkerMirroredStrategy warns that eager collectives are slow
    def total(vector: Any) -> Any:
        def this_worker() -> Any:  # counted once per worker, not once per local replica
            first = tf.distribute.get_replica_context().replica_id_in_sync_group % per_worker == 0
            return tf.where(first, vector, tf.zeros_like(vector))

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(this_worker), axis=None)

    def add(vector: np.ndarray) -> np.ndarray:
        return np.asarray(total(tf.constant(vector, tf.int64)))

    return Peers(index, count, add)
