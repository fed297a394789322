"""The epoch the input pipelines are in: a TensorFlow variable they read when a pass over the data starts.

tf.data's `shuffle(..., reshuffle_each_iteration=True)` draws each order from a hidden seed generator
that advances whenever an iterator is made — state no checkpoint can hold, so a resumed run would read
other batches than the uninterrupted run. kerasrun makes every shuffled order a pure function of
(seed, pass number) instead, and tells the pipeline the epoch through this variable: a run resumed at
epoch k reads exactly the batches the uninterrupted run read from epoch k on.
"""

from __future__ import annotations

from typing import Any

from kerasrun._tf import keras, tf


class EpochClock:
    """Holds the current epoch (0-based) where tf.data functions can read it."""

    def __init__(self, epoch: int = 0) -> None:
        with tf.device("/CPU:0"):  # tf.data runs on the host: a GPU variable would be out of its reach
            self.variable = tf.Variable(epoch, dtype=tf.int64, trainable=False, name="kerasrun_epoch")

    def set(self, epoch: int) -> None:
        """Move to `epoch`: passes that start from now on take its order."""
        self.variable.assign(epoch)

    def read(self) -> Any:
        """The epoch as an int64 scalar tensor (inside tf.data functions: read when the pass starts)."""
        return self.variable.read_value()

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback that sets the clock at the start of every epoch, in fit and in the custom loop."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: self.set(epoch))


# Stands in for a graph-level seed of 0 in seeded_shuffle: TensorFlow's get_seed compares (graph seed, op
# seed) with `== (0, 0)`, which fails on a tensor op seed when the graph seed is 0 (the config's `seed: 0`).
ZERO_SEED_STAND_IN = 0x5EED


def seeded_shuffle(dataset: Any, buffer_size: Any, op_seed: Any) -> Any:
    """`dataset.shuffle(buffer_size, seed=op_seed)` with a tensor op seed (e.g. the epoch's), whatever the global seed is.

    Must be called while tracing a tf.data function (flat_map): the graph-level seed is the config's
    seed (kerasrun sets it before building any pipeline), so the order is a function of (seed, op_seed).
    """
    graph = tf.compat.v1.get_default_graph()
    if graph.seed is not None and graph.seed % (2**31 - 1) == 0:
        graph.seed = ZERO_SEED_STAND_IN  # this function graph only
    return dataset.shuffle(buffer_size, seed=op_seed)
