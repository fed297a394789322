"""The data flow's entry point: source → contract checks → preprocessing → validation split (no class left untrained) → weights."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kerasrun.config.schema import Config
from kerasrun.data.arrays import Data, Split
from kerasrun.data.checks import check_arrays, check_finite
from kerasrun.data.peers import ALONE, Peers
from kerasrun.data.preprocess import preprocess
from kerasrun.data.sources import read_source
from kerasrun.data.sources.base import Where
from kerasrun.data.splits import check_classes_trained, class_coverage_notes, split_validation
from kerasrun.data.stream import Stream
from kerasrun.data.weights import class_weight_notes, weight_training
from kerasrun.errors import ConfigError


def load_data(config: Config, peers: Peers = ALONE) -> Data:
    """Read the config's data source and prepare train/validation/test; raise ConfigError on bad data.

    Under multi-worker every worker loads the data; `peers` lets a reader split its checks between them.
    """
    data = read_source(config.data, Where.of(config, peers))
    check_arrays(data, config)
    if isinstance(data.train, Split):
        data = replace(
            data,
            train=preprocess(data.train, config, "train"),
            validation=preprocess(data.validation, config, "validation") if isinstance(data.validation, Split) else data.validation,
            test=data.test and preprocess(data.test, config, "test"),
        )
        check_finite(data, config)
    elif config.data.preprocess and not isinstance(data.train, Stream):  # a Stream's reader applies them row by row
        raise ConfigError(config.problem(("data", "preprocess"), "preprocess steps apply to arrays; this source gave a tf.data.Dataset"))
    data = split_validation(data, config)
    check_classes_trained(data, config)
    data.notes.extend([*class_coverage_notes(data, config), *class_weight_notes(config, data.class_names)])
    # Weights are training weights: validation and test numbers stay comparable between weightings (class_weight's rule too).
    data = replace(data, validation=unweighted(data.validation), test=unweighted(data.test))
    return replace(data, train=weight_training(data.train, config, data.class_names))


def unweighted(split: Any) -> Any:
    """A validation or test split without the source's per-sample weights (a tf.data source's batches are kept as given)."""
    if isinstance(split, Split) and split.sample_weight is not None:
        return Split(split.x, split.y)
    if isinstance(split, Stream):
        return replace(split, unweighted=True)
    return split
