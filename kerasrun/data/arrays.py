"""The containers every stage of the data flow passes on: a split's arrays, and the splits of a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

# One array, or {name: array} / [array, ...] for a model with several inputs or outputs.
Arrays: TypeAlias = np.ndarray | dict[str, np.ndarray] | list[np.ndarray]


@dataclass
class Split:
    """Features, targets and optional per-sample weights of one split."""

    x: Arrays
    y: Arrays
    sample_weight: Arrays | None = None
    # TensorFlow tensors over these arrays, made once per output order (pipeline.batch_parts): the tf.data
    # pipeline and the custom loop's ArrayFeed read the same ones, so an array TensorFlow must copy (unaligned,
    # text) is copied once, not once per reader.
    tensors: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(leaves(self.x)[0][1])

    def named_arrays(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every array: `x`, `y[out]`, `sample_weight`, ..."""
        weights = leaves(self.sample_weight, "sample_weight") if self.sample_weight is not None else []
        return leaves(self.x, "x") + leaves(self.y, "y") + weights

    def take(self, index: np.ndarray | slice) -> Split:
        """The rows at `index` (of every array, for models with several inputs or outputs)."""
        sw = None if self.sample_weight is None else map_arrays(lambda a: a[index], self.sample_weight)
        return Split(map_arrays(lambda a: a[index], self.x), map_arrays(lambda a: a[index], self.y), sw)


def map_arrays(fn: Any, value: Any) -> Any:
    """Apply fn to an array, or to each array of a {name: array} mapping or list (several inputs or outputs)."""
    if isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    return [fn(v) for v in value] if isinstance(value, list) else fn(value)


def as_arrays(value: Any) -> Any:
    """NumPy arrays from an array, a {name: array} mapping, or a list of arrays (kept as a list)."""
    if isinstance(value, (list, tuple)) and value and all(hasattr(v, "shape") for v in value):
        return [np.asarray(v) for v in value]
    return map_arrays(np.asarray, value)


def name_lists(data: Data, inputs: list[str], outputs: list[str]) -> Data:
    """Lists of arrays (Keras's positional form) become {name: array} in the model's input/output order."""

    def named(value: Any, names: list[str]) -> Any:
        return dict(zip(names, value, strict=True)) if isinstance(value, list) and len(value) == len(names) and len(names) > 1 else value

    def convert(split: Any) -> Any:
        return Split(named(split.x, inputs), named(split.y, outputs), split.sample_weight) if isinstance(split, Split) else split

    return replace(data, train=convert(data.train), validation=convert(data.validation), test=convert(data.test))


def leaves(value: Any, name: str = "") -> list[tuple[str, np.ndarray]]:
    """(name, array) pairs of an array or a {name: array} mapping."""
    if isinstance(value, dict):
        return [(f"{name}[{k}]", v) for k, v in value.items()]
    if isinstance(value, list):
        return [(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [(name, value)]


@dataclass
class Data:
    """Everything training needs: train/validation/test splits (arrays or tf.data datasets)."""

    train: Any
    validation: Any = None
    test: Any = None
    data_dir: Path | None = None  # where a keras dataset was read from, recorded in the run's config
    # A tf.data training set is used as given, except the training part of a validation_split: its
    # batches are kerasrun's to reshuffle every epoch (train.shuffle), as array data is.
    shuffle_batches: bool = False
    class_names: list[str] | None = None  # what each integer label stands for, when the source names classes
    notes: list[str] = field(default_factory=list)  # what the reader did that the user should hear of (e.g. skipped files)

    def shuffles_train(self, shuffle: bool) -> bool:
        """Whether the training pipeline reshuffles every epoch, given train.shuffle."""
        from kerasrun.data.stream import Stream

        return shuffle and (isinstance(self.train, (Split, Stream)) or self.shuffle_batches)


def input_sample_shape(split: Any) -> tuple[int, ...] | None:
    """Per-sample feature shape of array data (None for datasets)."""
    from kerasrun.data.stream import Stream

    if isinstance(split, Stream):
        spec = split.make().element_spec[0]
        return None if isinstance(spec, dict) else tuple(spec.shape)
    if not isinstance(split, Split) or isinstance(split.x, dict):
        return None
    # A list of arrays (e.g. a single input given as [x]) has no .shape and raises AttributeError here; kept as is.
    return tuple(split.x.shape[1:])  # type: ignore[union-attr]
