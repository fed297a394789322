"""The tf.data pipeline: batches whose order is a pure function of (seed, epoch), streamed or one pass per epoch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasrun.data.arrays import Arrays, Split
from kerasrun.data.epochs import EpochClock, seeded_shuffle
from kerasrun.data.memory import share_with_tensorflow
from kerasrun.data.stream import Stream, stream_batches_by_epoch


def make_dataset(
    split: Any,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    outputs: list[str] | None = None,
    clock: EpochClock | None = None,
    steps_per_epoch: int | None = None,
    until: Any = None,
) -> Any:
    """A batched, prefetched tf.data pipeline whose order is a pure function of (seed, epoch).

    With `shuffle`, pass p over array data is in the order `stateless_shuffle(range(n), seed=(seed, p))`,
    where p is the epoch `clock` holds when the pass starts. With `steps_per_epoch`, the data is an
    endless stream of such passes and epoch e reads its batches e x steps_per_epoch onwards, whatever
    the pass boundaries — so every epoch trains exactly that many steps and a resumed run reads
    exactly what the uninterrupted run read. A tf.data source is streamed the same way; its own
    order is kerasrun's to control only where kerasrun shuffles it (a validation_split's training
    part). Per-output sample weights go to Keras as a tuple in the model's output order (`outputs`).
    `until(epoch)` ends a streamed source's endless stream after the batches a run reads from `epoch` on.
    """
    from kerasrun._tf import tf

    if isinstance(split, Stream):  # rows read from files while training
        return stream_batches_by_epoch(split, batch_size, shuffle, clock or EpochClock(), steps_per_epoch, until)
    if not isinstance(split, Split):  # a tf.data.Dataset (or generator) from a python source
        if steps_per_epoch is not None:
            return stream_batches(split, clock or EpochClock(), steps_per_epoch, shuffle)
        return reshuffle_batches(split, clock or EpochClock()) if shuffle else split
    tensors = batch_parts(split, outputs)
    index = index_batches(len(split), batch_size, shuffle, seed, clock, steps_per_epoch)
    # Gathering whole batches by index is far cheaper than slicing and batching single samples.
    # No AutoGraph: the function has no Python control flow, and converting it re-parses this file (~0.2 s).
    gather = tf.autograph.experimental.do_not_convert(lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), tensors))
    batches = index.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    # tf.data's static graph rewrites would serialize the captured arrays into the graph (a full copy of
    # the training data, 0.4 s for MNIST) and gain nothing: the pipeline is already parallel and prefetched.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return batches.with_options(options)


def batch_parts(split: Split, outputs: list[str] | None) -> Any:
    """(x, y[, sample_weight]) of a split as tensors over its arrays, in the structure Keras reads a batch in; made once per split."""
    from kerasrun._tf import tf

    sample_weight: Arrays | tuple[np.ndarray, ...] | None = split.sample_weight
    if isinstance(sample_weight, dict):
        sample_weight = tuple(sample_weight[name] for name in (outputs or list(sample_weight)))
    parts = tuple(a for a in (split.x, split.y, sample_weight) if a is not None)
    # The same arrays in the same structure (a dict stays a dict): the ids are unique because the arrays are kept.
    # A split's arrays are never written in place after loading, so their identity stands for their contents.
    identity = tf.nest.map_structure(id, parts)
    key = tuple(outputs or ())
    made = split.tensors.get(key)
    if made is None or made[1] != identity:
        made = split.tensors[key] = (parts, identity, tf.nest.map_structure(share_with_tensorflow, parts))
    return made[2]


def pass_order(n: int, shuffle: bool, seed: int, number: Any) -> Any:
    """The sample indices of pass `number` (a scalar tensor) in order: `stateless_shuffle(range(n), seed=(seed, number))` when shuffled."""
    from kerasrun._tf import tf

    order = tf.range(n, dtype=tf.int64)
    if shuffle:
        order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.constant(seed, tf.int64), number]))
    return order


def index_batches(n: int, batch_size: int, shuffle: bool, seed: int, clock: EpochClock | None, steps_per_epoch: int | None) -> Any:
    """Batches of sample indices: one pass in order, one reshuffled pass per epoch, or an endless stream of passes."""
    from kerasrun._tf import tf

    if not shuffle and steps_per_epoch is None:
        return tf.data.Dataset.range(n).batch(batch_size)
    clock = clock or EpochClock()
    per_pass = math.ceil(n / batch_size)

    def one_pass(number: Any) -> Any:
        return tf.data.Dataset.from_tensor_slices(pass_order(n, shuffle, seed, number)).batch(batch_size)

    if steps_per_epoch is None:  # one pass per epoch, in the epoch's order
        index = tf.data.Dataset.range(1).flat_map(lambda _: one_pass(clock.read()))
        return index.apply(tf.data.experimental.assert_cardinality(per_pass))

    def stream_from_epoch(_: Any) -> Any:
        start = clock.read() * steps_per_epoch  # the global batch this epoch starts at
        passes = tf.data.Dataset.range(start // per_pass, tf.int64.max).flat_map(one_pass)
        return passes.skip(start % per_pass)

    index = tf.data.Dataset.range(1).flat_map(stream_from_epoch)
    return index.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def stream_batches(dataset: Any, clock: EpochClock, steps_per_epoch: int, shuffle: bool) -> Any:
    """A finite tf.data dataset of batches as an endless stream of passes, read from the clock's epoch x steps_per_epoch on.

    Pass p is reshuffled with op seed p + 1 when `shuffle` (see reshuffle_batches). A dataset of
    unknown length is simply repeated; on resume its stream is skipped to the epoch's first batch by reading.
    """
    from kerasrun._tf import tf

    per_pass = int(dataset.cardinality())

    def one_pass(number: Any) -> Any:
        return seeded_shuffle(dataset, per_pass, number + 1) if shuffle else dataset

    def stream_from_epoch(_: Any) -> Any:
        start = clock.read() * steps_per_epoch  # the global batch this epoch starts at
        if per_pass <= 0:
            return dataset.repeat().skip(start)
        return tf.data.Dataset.range(start // per_pass, tf.int64.max).flat_map(one_pass).skip(start % per_pass)

    stream = tf.data.Dataset.range(1).flat_map(stream_from_epoch)
    return stream.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def reshuffle_batches(dataset: Any, clock: EpochClock) -> Any:
    """A finite tf.data dataset of batches, in a new order each epoch that depends only on the epoch.

    tf.data draws a shuffle's order from the global seed (kerasrun sets it to the config's seed before
    building the model) and this op seed; epoch + 1 because seeds (0, 0) would mean "random".
    """
    from kerasrun._tf import tf

    batches = int(dataset.cardinality())
    shuffled = tf.data.Dataset.range(1).flat_map(lambda _: seeded_shuffle(dataset, batches, clock.read() + 1))
    return shuffled.apply(tf.data.experimental.assert_cardinality(batches))
