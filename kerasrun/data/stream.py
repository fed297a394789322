"""Splits streamed from files while they train: rows chosen by a mask, shuffled in a bounded buffer, never all in memory.

A `Stream` knows how to build a tf.data dataset of every row of its source, in file order, and which
of those rows are its own (a boolean mask, one byte per source row). Holding out a test or
validation fraction is choosing rows — the same rows the in-memory reader would choose — so no row
ever moves between splits. What kerasrun keeps in memory per row is that mask and, when the target
is a class, its label (one or two bytes): enough for stratified splits, class weights and the label
checks, never the features.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.data.epochs import EpochClock, seeded_shuffle
from kerasrun.data.peers import Peers


@dataclass(frozen=True)
class Shards:
    """A source stored in files (TFRecord shards): what a worker needs to read only some of them, rows still numbered in the source."""

    files: list[str]
    positions: list[np.ndarray]  # per file: each record's row in the source (the interleaved order every pass reads)
    numbered: Callable[[list[int]], Any]  # a dataset of (row, element) over those files (by index), interleaved among them


@dataclass
class Stream:
    """One split of a streamed source: the rows of `make()` where `mask` is true (every row when None)."""

    make: Callable[[], Any]  # a fresh tf.data dataset of (x, y) elements, every row of the source in file order
    total: int  # rows in the source
    shuffle_buffer: int  # rows the training shuffle holds at once
    mask: np.ndarray | None = None  # bool per source row: this split's rows
    labels: np.ndarray | None = None  # integer class of every source row, when the (single) target is a class
    weights: np.ndarray | None = None  # per-class weight table: elements get sample weights weights[label]
    unweighted: bool = False  # a validation or test split: the source's own weight column is left out of its elements
    cache_path: str | None = None  # data.cache: file — the split's rows are cached here on the first pass
    shards: Shards | None = None  # the source's files, when a worker can read its share of them alone
    held: np.ndarray | None = None  # a worker's share: the source rows its files hold (make() then yields (row, element))

    def __len__(self) -> int:
        if self.held is not None:
            return len(self.held) if self.mask is None else int(np.count_nonzero(self.mask[self.held]))
        return self.total if self.mask is None else int(np.count_nonzero(self.mask))

    def share(self, index: int, count: int) -> Stream:
        """Worker `index` of `count`'s part of the split: the rows in files index, index + count, ... (read by file)."""
        assert self.shards is not None
        files = list(range(index, len(self.shards.files), count))
        held = np.sort(np.concatenate([self.shards.positions[f] for f in files]))
        return replace(self, make=lambda: self.shards.numbered(files), held=held)  # type: ignore[union-attr]

    @property
    def y(self) -> np.ndarray:
        """This split's class labels (empty for a target that is not a class): for stratified splits, class weights, checks."""
        if self.labels is None:
            return np.zeros(0, np.float32)
        return self.labels if self.mask is None else self.labels[self.mask]

    def rows(self) -> np.ndarray:
        """The source rows of this split, in file order."""
        return np.arange(self.total) if self.mask is None else np.flatnonzero(self.mask)

    def take(self, index: np.ndarray | slice) -> Stream:
        """The split's rows at `index` (positions within this split, in order): a split of the same source."""
        mask = np.zeros(self.total, dtype=bool)
        mask[self.rows()[index]] = True
        return replace(self, mask=mask)

    def elements(self) -> Any:
        """This split's (x, y[, sample_weight]) elements, in file order."""
        from kerasrun._tf import tf

        dataset = self.make()
        if self.mask is not None or self.held is not None:
            if self.held is None:  # a worker's share numbers its rows itself: (row in the source, element)
                dataset = dataset.enumerate()
            if self.mask is not None:
                keep = tf.constant(self.mask)
                dataset = dataset.filter(lambda i, _: keep[i])
            dataset = dataset.map(lambda _, element: element)
        if self.cache_path is not None:  # decoded once, on the first full pass; read from the file afterwards
            dataset = dataset.cache(self.cache_path)
        if self.unweighted:
            dataset = dataset.map(lambda x, y, *weight: (x, y))
        if self.weights is not None:
            table = tf.constant(self.weights)

            def add_weight(x: Any, y: Any, *given: Any) -> tuple[Any, Any, Any]:
                label = tf.argmax(y, output_type=tf.int32) if y.shape.rank == 1 and y.shape[0] > 1 else tf.cast(tf.reshape(y, []), tf.int32)
                weight = tf.gather(table, label)
                return x, y, weight * tf.cast(given[0], weight.dtype) if given else weight  # times the source's own weight

            dataset = dataset.map(add_weight)
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self)))


def stream_batches_by_epoch(
    stream: Stream, batch_size: int, shuffle: bool, clock: EpochClock, steps_per_epoch: int | None, until: Any = None
) -> Any:
    """Batches of a Stream whose order is a function of (seed, pass): one pass per epoch, or an endless stream of passes.

    Pass p is shuffled in a buffer of `stream.shuffle_buffer` rows with op seed p + 1 (the global seed
    is the config's seed), so a resumed run reads exactly what the uninterrupted run read. `until(epoch)`:
    how many batches the run reads from the start of `epoch` on — the stream ends there (before the
    prefetch, which would otherwise start the next pass and fill its shuffle buffer), still endless to
    tf.distribute, which never asks for more.
    """
    from kerasrun._tf import tf

    size = len(stream)
    per_pass = math.ceil(size / batch_size)
    buffer = max(1, min(stream.shuffle_buffer, size))

    def one_pass(number: Any) -> Any:
        elements = stream.elements()
        if shuffle:
            elements = seeded_shuffle(elements, buffer, number + 1)
        return elements.batch(batch_size)

    if steps_per_epoch is None:
        batches = tf.data.Dataset.range(1).flat_map(lambda _: one_pass(clock.read()))
        batches = batches.apply(tf.data.experimental.assert_cardinality(per_pass))
    else:

        def stream_from_epoch(_: Any) -> Any:
            start = clock.read() * steps_per_epoch  # the global batch this epoch starts at
            passes = tf.data.Dataset.range(start // per_pass, tf.int64.max).flat_map(one_pass).skip(start % per_pass)
            return passes if until is None else passes.take(until(clock.read()))

        batches = tf.data.Dataset.range(1).flat_map(stream_from_epoch)
        batches = batches.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    # Under a multi-worker strategy, shard by data, never by file: a split is rows chosen by their index
    # in the whole source, so every worker must read the same rows in the same order and take its share.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def worker_share(split: Any, peers: Peers) -> Stream | None:
    """This worker's share of a training split kept in at least as many files as there are workers, read by file; else None (by row)."""
    if peers.count > 1 and isinstance(split, Stream) and split.shards is not None and len(split.shards.files) >= peers.count:
        return split.share(peers.index, peers.count)
    return None


def compact(labels: np.ndarray) -> np.ndarray:
    """Non-negative labels in the smallest unsigned dtype that holds them (a byte per row for up to 256 classes)."""
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.int64
    return labels.astype(dtype)


def cache_in(data: Any, folder: Path) -> Any:
    """`data` whose streamed splits cache their rows in `folder` (emptied first: a cache left by an interrupted run may be partial)."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    splits = {name: getattr(data, name) for name in ("train", "validation", "test")}
    cached = {name: replace(split, cache_path=str(folder / name)) for name, split in splits.items() if isinstance(split, Stream)}
    return replace(data, **cached)
