"""ArrayFeed: the batches the custom loop gathers inside its compiled call are make_dataset's stream, batch for batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kerasrun._tf import tf
from kerasrun.data import Split, make_dataset
from kerasrun.data.epochs import EpochClock
from kerasrun.data.feed import gather_batch, make_array_feed


def make_split(n: int, dict_inputs: bool = False, weights: bool = False, two_outputs: bool = False) -> Split:
    """n distinct rows (each row's values name it), with optional dict inputs, sample weights and two outputs."""
    rows = np.arange(n, dtype=np.float32)
    x: Any = {"a": rows[:, None] * np.ones(3, np.float32), "b": -rows} if dict_inputs else rows[:, None] * np.ones(2, np.float32)
    y: Any = {"p": rows.astype(np.int64), "q": rows * 10} if two_outputs else rows.astype(np.int64)
    sample_weight: Any = None
    if weights:
        sample_weight = {"q": rows + 0.5, "p": rows + 0.25} if two_outputs else rows + 0.5
    return Split(x, y, sample_weight)


def stream_batches(
    split: Split, batch: int, shuffle: bool, seed: int, steps_per_epoch: int, epoch: int, steps: int, outputs: Any
) -> list[Any]:
    """`steps` batches of make_dataset's stream from epoch `epoch`, as numpy."""
    dataset = make_dataset(split, batch, shuffle, seed, outputs, EpochClock(epoch), steps_per_epoch)
    return [tf.nest.map_structure(np.asarray, b) for b in dataset.take(steps)]


def feed_batches(split: Split, batch: int, shuffle: bool, seed: int, first: int, steps: int, per_call: int, outputs: Any) -> list[Any]:
    """`steps` batches of the feed from the run's batch `first`, gathered chunk by chunk as the loop does."""
    feed = make_array_feed(split, batch, shuffle, seed, outputs)
    assert feed is not None
    out = []
    for start in range(first, first + steps, per_call):
        order, bounds = feed.chunk(start, min(per_call, first + steps - start))
        out += [tf.nest.map_structure(np.asarray, gather_batch(feed.parts, order, row)) for row in tf.constant(bounds)]
    return out


def assert_same(expected: list[Any], got: list[Any]) -> None:
    """The two lists of batches have the same structure and the same values, batch for batch."""
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        tf.nest.assert_same_structure(want, have)
        for a, b in zip(tf.nest.flatten(want), tf.nest.flatten(have), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("n", "batch", "shuffle", "steps_per_epoch", "epoch", "per_call"),
    [
        (10, 4, True, 3, 0, 2),  # one epoch = one pass with a short last batch
        (10, 4, True, 5, 2, 3),  # epochs cross pass boundaries; start mid-pass at epoch 2
        (7, 3, False, 4, 1, 32),  # in order: every pass the same; a call longer than a pass
        (9, 2, True, 2, 3, 8),  # a call spanning several passes
    ],
)
def test_feed_reads_the_stream_batch_for_batch(n: int, batch: int, shuffle: bool, steps_per_epoch: int, epoch: int, per_call: int) -> None:
    """From any epoch, the feed's batches are the tf.data stream's (shuffled orders, pass crossings, short batches)."""
    split = make_split(n)
    steps = 3 * steps_per_epoch + 1
    expected = stream_batches(split, batch, shuffle, 5, steps_per_epoch, epoch, steps, None)
    assert_same(expected, feed_batches(split, batch, shuffle, 5, epoch * steps_per_epoch, steps, per_call, None))


def test_feed_keeps_dict_inputs_and_per_output_weights_in_the_models_order() -> None:
    """Dict inputs, two outputs and per-output sample weights come out as make_dataset gives them to Keras."""
    split = make_split(11, dict_inputs=True, weights=True, two_outputs=True)
    outputs = ["p", "q"]
    expected = stream_batches(split, 4, True, 1, 3, 1, 7, outputs)
    got = feed_batches(split, 4, True, 1, 3, 7, 4, outputs)
    assert_same(expected, got)
    assert isinstance(got[0][0], dict) and len(got[0]) == 3  # (x, y, sample_weight)


def test_feed_is_only_for_in_memory_splits() -> None:
    """Streamed or tf.data sources, and empty splits, keep their pipelines."""
    assert make_array_feed(tf.data.Dataset.range(3), 2, False, 0) is None
    assert make_array_feed(make_split(0), 2, False, 0) is None


def test_the_pipeline_and_the_feed_share_one_copy_of_the_split() -> None:
    """An array TensorFlow must copy (here unaligned) is copied once for both readers; new arrays get new tensors."""
    from kerasrun.data.pipeline import batch_parts

    raw = np.zeros(300_000 * 4 + 4, np.uint8)[4:].view(np.float32).reshape(-1, 4)  # 4.8 MB, not 64-byte aligned
    split = Split(raw, np.zeros(len(raw), np.int64))
    feed = make_array_feed(split, 32, True, 0)
    assert feed is not None
    assert batch_parts(split, None) is feed.parts  # make_dataset reads these same tensors
    split.x = copied = raw.copy()
    assert batch_parts(split, None) is not feed.parts
    split.x = {"a": copied}  # the same array in another structure: tensors in that structure
    assert isinstance(batch_parts(split, None)[0], dict)
    split.x = [copied]
    assert isinstance(batch_parts(split, None)[0], list)
