"""Validation data: Keras's last-fraction split, a stratified split, the test split, or batches of a tf.data source."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from kerasrun.config.schema import Config
from kerasrun.data.arrays import Data, Split
from kerasrun.data.stream import Stream
from kerasrun.errors import ConfigError


def class_labels(y: Any) -> np.ndarray:
    """Integer class labels from sparse or one-hot targets."""
    if isinstance(y, (dict, list)):
        raise ValueError("class labels of a model with several outputs")
    y = np.asarray(y)
    if y.ndim >= 2 and y.shape[-1] > 1:
        return y.reshape(len(y), -1).argmax(axis=1)
    return y.reshape(len(y))


def split_validation(data: Data, config: Config) -> Data:
    """Hold out validation data: Keras's last-fraction split, a stratified split, or the test split."""
    spec = config.train
    if spec.validation_data == "test":
        if data.test is None:
            raise ConfigError(config.problem(("train", "validation_data"), "the data source has no test split to validate on"))
        return replace(data, validation=data.test)
    if spec.validation_split is None:
        return data
    loc = ("train", "validation_split")
    if data.validation is not None:
        raise ConfigError(config.problem(loc, "the data source already provides validation data"))
    if not isinstance(data.train, (Split, Stream)):  # a Stream is split by rows, as arrays are
        return replace(data, **split_dataset(data.train, config))
    n = len(data.train)
    if spec.stratify:
        from sklearn.model_selection import train_test_split

        try:
            train_index, val_index = train_test_split(
                np.arange(n), test_size=spec.validation_split, random_state=config.seed, stratify=class_labels(data.train.y)
            )
        except ValueError as exc:
            raise ConfigError(config.problem(("train", "stratify"), f"cannot stratify: {exc}")) from None
        return replace(data, train=data.train.take(np.sort(train_index)), validation=data.train.take(np.sort(val_index)))
    split_at = math.floor(n * (1.0 - spec.validation_split))  # exactly Keras's rule
    if split_at in (0, n):
        raise ConfigError(config.problem(loc, f"validation_split {spec.validation_split} of {n} samples leaves an empty split"))
    if spec.validation_from == "first":  # the same count, taken from the front (x[:k] for validation)
        held = n - split_at
        return replace(data, train=data.train.take(slice(held, n)), validation=data.train.take(slice(0, held)))
    return replace(data, train=data.train.take(slice(0, split_at)), validation=data.train.take(slice(split_at, n)))


def split_dataset(dataset: Any, config: Config) -> dict[str, Any]:
    """Validation from a batched tf.data source: its last ceil(fraction x batches) batches (take/skip).

    The source must yield the same batches in the same order on every pass (shuffle nothing in it);
    with train.shuffle, kerasrun then reshuffles the training batches every epoch with the seed, so the
    split is reproducible and no batch ever moves between training and validation.
    """

    assert config.train.validation_split is not None  # split_validation calls this only with a split
    loc = ("train", "validation_split")
    batches = int(dataset.cardinality())
    if batches <= 0:
        raise ConfigError(
            config.problem(
                loc,
                "validation_split on a tf.data source needs its length",
                "end the dataset with .apply(tf.data.experimental.assert_cardinality(n)), or return train and validation datasets",
            )
        )
    held = math.ceil(batches * config.train.validation_split)
    if held >= batches:
        raise ConfigError(
            config.problem(loc, f"validation_split {config.train.validation_split} of {batches} batches leaves no training batch")
        )
    # With train.shuffle, make_dataset reshuffles the training batches every epoch (see Data.shuffle_batches).
    return {"train": dataset.take(batches - held), "validation": dataset.skip(batches - held), "shuffle_batches": True}
