"""Validation data: Keras's last-fraction split, a stratified split, the test split, or batches of a tf.data source; no class left untrained."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.data import NpzData, PythonData, validation_key
from kerasrun.config.schema import Config, two_validations
from kerasrun.config.spec import split_spec
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
        if data.validation is not None:  # using either one silently would leave the user guessing which numbers val_* are
            raise ConfigError(two_validations(config, *own_validation(config)))
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
            raise ConfigError(
                config.problem(
                    ("train", "stratify"),
                    f"cannot stratify: {exc}",
                    "every class needs 2 samples or more to be split in proportion: add samples of the rare classes, or drop them",
                )
            ) from None
        return replace(data, train=data.train.take(np.sort(train_index)), validation=data.train.take(np.sort(val_index)))
    split_at = math.floor(n * (1.0 - spec.validation_split))  # exactly Keras's rule
    if split_at in (0, n):
        raise ConfigError(config.problem(loc, f"validation_split {spec.validation_split} of {n} samples leaves an empty split"))
    if spec.validation_from == "first":  # the same count, taken from the front (x[:k] for validation)
        held = n - split_at
        return replace(data, train=data.train.take(slice(held, n)), validation=data.train.take(slice(0, held)))
    return replace(data, train=data.train.take(slice(0, split_at)), validation=data.train.take(slice(split_at, n)))


def own_validation(config: Config) -> tuple[str, str | None]:
    """Where the source's own validation data comes from, for a message, and how to give it up (None: remove that key)."""
    spec = config.data
    if (key := validation_key(spec)) is not None:
        return f"data.{key}", None
    if isinstance(spec, NpzData):
        names = [name for key in ("x_val", "y_val") for name in as_names(getattr(spec, key))]
        return (
            f"the arrays {', '.join(names)} of {Path(spec.path).name}, read by data.x_val and data.y_val",
            "set data.x_val: null and data.y_val: null",
        )
    if isinstance(spec, PythonData):
        return f"the validation data {spec.function} returns", f"return no validation data from {spec.function}"
    return "its validation split", "give the source no validation data"


def as_names(key: str | dict[str, str] | None) -> list[str]:
    """The array names an npz key gives: one name, or one per input or output."""
    return [] if key is None else list(key.values()) if isinstance(key, dict) else [key]


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


# Losses whose targets are classes (names normalised: lower case, no underscores): sparse labels, one-hot rows or 0/1 labels.
SPARSE_CLASS_LOSSES = {"sparsecategoricalcrossentropy"}
ONE_HOT_CLASS_LOSSES = {"categoricalcrossentropy", "categoricalfocalcrossentropy", "categoricalhinge"}
BINARY_CLASS_LOSSES = {"binarycrossentropy", "binaryfocalcrossentropy"}
# Losses of a regression output: with them, class weights need targets that are classes all the same (data.weights).
REGRESSION_LOSSES = {
    "mse", "meansquarederror", "mae", "meanabsoluteerror", "mape", "meanabsolutepercentageerror",
    "msle", "meansquaredlogarithmicerror", "huber", "logcosh", "poisson",
}  # fmt: skip
SHOWN_CLASSES = 10  # classes named in one message; the rest are counted


def split_classes(split: Any, config: Config, named: bool) -> np.ndarray | None:
    """The integer class of every sample of a split when its one target is a class, else None.

    A target is a class when the source names the classes (`named`) or the one loss is a classification
    loss given by Keras name; a regression target, several outputs, sequence labels, multi-label rows
    and a tf.data source (its labels are not known before training) give None.
    """
    if isinstance(split, Stream):
        return None if split.labels is None else split.y.astype(np.int64)
    if not isinstance(split, Split):
        return None
    y: Any = split.y
    if isinstance(y, dict) and len(y) == 1:
        (y,) = y.values()
    elif isinstance(y, list) and len(y) == 1:
        y = y[0]
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "biuf" or len(y) == 0:
        return None
    name, kwargs, _ = split_spec(config.compile.loss) if isinstance(config.compile.loss, (str, dict)) else ("", {}, None)
    loss = name.lower().replace("_", "")
    column = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
    if loss in ONE_HOT_CLASS_LOSSES and y.ndim == 2 and y.shape[1] > 1:
        return np.asarray(y.argmax(axis=1), np.int64)
    if not column or not (named or loss in SPARSE_CLASS_LOSSES | BINARY_CLASS_LOSSES):
        return None
    labels = y.reshape(len(y))
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        return None  # soft labels (or NaN): no classes to count
    labels = labels.astype(np.int64)
    ignore = kwargs.get("ignore_class")
    return labels[labels != ignore] if isinstance(ignore, int) and loss in SPARSE_CLASS_LOSSES else labels


def check_classes_trained(data: Data, config: Config) -> None:
    """Refuse validation or test data holding a class the training split has no sample of: a split that dropped a class.

    A model never trained on a class cannot predict it, and its validation and test numbers then
    measure the split, not the model. A class that is merely rare in training is not refused
    (`kerasrun data` shows the counts per split).
    """
    named = data.class_names is not None
    train = split_classes(data.train, config, named)
    if train is None:
        return
    trained = set(np.unique(train).tolist())
    problems = []
    for name, split in (("validation", data.validation), ("test", data.test)):
        if name == "validation" and config.train.validation_data == "test":
            continue  # the test split itself: checked once, below
        labels = split_classes(split, config, named)
        if labels is None:
            continue
        values, counts = np.unique(labels, return_counts=True)
        missing = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if int(v) not in trained]
        if not missing:
            continue
        shown = ", ".join(
            f"{v}{f' ({data.class_names[v]})' if data.class_names and 0 <= v < len(data.class_names) and data.class_names[v] != str(v) else ''}"
            f": {c} {name} sample{'s' if c != 1 else ''}"
            for v, c in missing[:SHOWN_CLASSES]
        ) + (f" and {len(missing) - SHOWN_CLASSES} more classes" if len(missing) > SHOWN_CLASSES else "")
        loc, hint = classes_loc(name, config)
        if all(count == 1 for _, count in missing) and ("stratify" in hint):
            # One sample in all: no split puts it on both sides, and stratifying refuses such a class outright.
            hint = "a class with one sample in all can't be in both splits: add samples of it, or drop it from the data"
        problems.append(
            config.problem(
                loc, f"the training split has 0 samples of class {shown}: a model never trained on a class cannot learn it", hint
            )
        )
    if problems:
        raise ConfigError(problems)


def classes_loc(split_name: str, config: Config) -> tuple[tuple[Any, ...], str]:
    """Where the validation or test split came from (the key that made it), and what to change there."""
    stratify = "set train.stratify: true (each class split in proportion), or hold out a smaller fraction"
    if split_name == "validation" and config.train.validation_split is not None:
        return ("train", "validation_split"), stratify
    if split_name == "test" and getattr(config.data, "test_fraction", None) is not None:
        if hasattr(config.data, "stratify"):
            return ("data", "test_fraction"), "set data.stratify: true (each class split in proportion), or hold out a smaller fraction"
        return ("data", "test_fraction"), "hold out a smaller test_fraction, or give test data of its own (e.g. data.test_path)"
    key = {"validation": ("validation_path", "y_val"), "test": ("test_path", "y_test")}[split_name]
    given = next((k for k in key if getattr(config.data, k, None) is not None), None)
    where = ("data", given) if given else ("data",)
    return (
        where,
        f"the {split_name} data has classes the training data lacks: add training samples of them, or drop them from the {split_name} data",
    )


def class_coverage_notes(data: Data, config: Config) -> list[str]:
    """One line per validation or test split that lacks classes the training split has (their numbers then leave them out).

    Keras's validation_split takes the last rows: on data sorted by class it holds only the last
    classes, and val_accuracy measures those alone. Not an error (a small split of many classes
    misses some by chance), but never silent.
    """
    named = data.class_names is not None
    train = split_classes(data.train, config, named)
    if train is None:
        return []
    trained = sorted(set(np.unique(train).tolist()))
    notes = []
    for name, split in (("validation", data.validation), ("test", data.test)):
        if name == "validation" and config.train.validation_data == "test":
            continue  # the test split itself: noted once, below
        labels = split_classes(split, config, named)
        if labels is None or len(labels) == 0:
            continue
        present = set(np.unique(labels).tolist())
        absent = [label for label in trained if label not in present]
        if not absent:
            continue
        shown = ", ".join(
            f"{label}{f' ({data.class_names[label]})' if data.class_names and 0 <= label < len(data.class_names) and data.class_names[label] != str(label) else ''}"
            for label in absent[:SHOWN_CLASSES]
        ) + (f" and {len(absent) - SHOWN_CLASSES} more" if len(absent) > SHOWN_CLASSES else "")
        loc, hint = classes_loc(name, config)
        if name == "validation" and loc == ("train", "validation_split") and not config.train.stratify:
            hint = "Keras's validation_split takes the last rows, so data sorted by class validates on its last classes: set train.stratify: true"
        elif name == "validation" and loc == ("train", "validation_split"):
            hint = "stratified already, the split is too small for the rarest classes: hold out a larger fraction, or add samples of them"
        else:
            hint = f"{'.'.join(map(str, loc))}: {hint}"
        plural = len(absent) > 1
        notes.append(
            f"the {name} split ({len(labels)} samples) has no sample of class{'es' if plural else ''} {shown} "
            f"({len(present)} of the {len(trained)} trained classes): its numbers leave {'them' if plural else 'it'} out; {hint}"
        )
    return notes
