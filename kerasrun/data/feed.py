"""In-memory batches read inside a compiled call: the batches of make_dataset's stream, by index, without a tf.data iterator.

Getting each batch from a tf.data iterator (`get_next_as_optional`, a `tf.cond`, the hand-over from
tf.data's threads) cost ~0.25 ms of a ~0.65 ms training step of the seed MLP on this 2-core machine,
and as much of a validation step (bench/README.md, #21). For arrays already in memory the compiled
call can gather its batches itself: the call gets the pass's order and each step's [start, end) in
it, and gathers the rows, as make_dataset's parallel map does — the same rows in the same order, so
the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasrun.data.arrays import Split
from kerasrun.data.pipeline import batch_parts, pass_order

PASSES_KEPT = 2  # a chunk crosses at most into the next pass when a pass is longer than a chunk


class ArrayFeed:
    """Batch g of the run (counted across epochs) is batch g % per_pass of pass g // per_pass, as in make_dataset's stream.

    Pass p is `stateless_shuffle(range(n), seed=(seed, p))` when shuffled, else range(n); its batches
    are consecutive `batch_size` slices, the last one shorter.
    """

    def __init__(self, parts: Any, n: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.parts = parts  # (x, y[, sample_weight]) as tensors over the split's arrays
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.per_pass = math.ceil(n / batch_size)
        self.orders: dict[int, Any] = {}

    def order(self, number: int) -> Any:
        """Pass `number`'s sample indices (an int64 tensor), computed once."""
        from kerasrun._tf import tf

        number = number if self.shuffle else 0  # every pass in order is the same
        if number not in self.orders:
            if len(self.orders) >= PASSES_KEPT:
                del self.orders[min(self.orders)]
            # On the CPU, where make_dataset's tf.data pipeline computes the same order: a device's own
            # kernel for the shuffle need not draw the same permutation. Then one copy to the default device.
            with tf.device("/CPU:0"):
                order = pass_order(self.n, self.shuffle, self.seed, tf.constant(number, tf.int64))
            self.orders[number] = tf.identity(order)
        return self.orders[number]

    def chunk(self, first: int, steps: int) -> tuple[Any, np.ndarray]:
        """Batches first .. first + steps - 1: the indices they are cut from, and each batch's [start, end) in them."""
        from kerasrun._tf import tf

        numbers = range(first // self.per_pass, (first + steps - 1) // self.per_pass + 1)
        orders = [self.order(number) for number in numbers]
        batches = np.arange(first, first + steps, dtype=np.int64)
        within = batches % self.per_pass
        offset = (batches // self.per_pass - numbers[0]) * self.n
        bounds = np.stack([offset + within * self.batch_size, offset + np.minimum((within + 1) * self.batch_size, self.n)], axis=1)
        return (orders[0] if len(orders) == 1 else tf.concat(orders, 0)), bounds


def gather_batch(parts: Any, order: Any, bounds: Any) -> Any:
    """Inside the compiled call: the rows order[start:end] of every part, as make_dataset's map gathers them."""
    from kerasrun._tf import tf

    index = order[bounds[0] : bounds[1]]
    return tf.nest.map_structure(lambda t: tf.gather(t, index), parts)


def make_array_feed(split: Any, batch_size: int, shuffle: bool, seed: int, outputs: list[str] | None = None) -> ArrayFeed | None:
    """An ArrayFeed for a non-empty in-memory split (None for streamed files or tf.data sources)."""
    if not isinstance(split, Split) or len(split) == 0:
        return None
    return ArrayFeed(batch_parts(split, outputs), len(split), batch_size, shuffle, seed)
