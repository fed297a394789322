"""`data.preprocess` steps, applied to array splits in NumPy (reshape, scale, cast, one_hot)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasrun.config.data import PreprocessStep
from kerasrun.config.schema import Config
from kerasrun.data.arrays import Split
from kerasrun.data.memory import cast_aligned
from kerasrun.errors import ConfigError


def preprocess(split: Split, config: Config, name: str) -> Split:
    """Apply `data.preprocess` steps in order (one_hot to targets, the rest to features)."""
    x, y = split.x, split.y
    if not config.data.preprocess:
        return Split(x, y, split.sample_weight)
    if isinstance(x, (dict, list)) or isinstance(y, (dict, list)):
        raise ConfigError(
            config.problem(
                ("data", "preprocess"), "preprocess steps apply to single-array features and targets; prepare named arrays in the source"
            )
        )
    for index, step in enumerate(config.data.preprocess):
        loc = ("data", "preprocess", index)
        if step.reshape is not None:
            try:
                x = x.reshape((len(x), *step.reshape))
            except ValueError:
                raise ConfigError(
                    config.problem(loc + ("reshape",), f"cannot reshape {name} samples of shape {x.shape[1:]} to {tuple(step.reshape)}")
                ) from None
        elif step.scale is not None:
            x = scale_aligned(x, np.float32(step.scale))
        elif step.cast is not None:
            try:
                x = cast_aligned(x, np.dtype(step.cast))
            except TypeError:
                raise ConfigError(config.problem(loc + ("cast",), f"unknown dtype `{step.cast}`", "e.g. float32, float16, int32")) from None
        elif step.one_hot is not None:
            labels = np.asarray(y).reshape(-1).astype(np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= step.one_hot):
                raise ConfigError(
                    config.problem(
                        loc + ("one_hot",), f"{name} labels range over {labels.min()}..{labels.max()}, outside 0..{step.one_hot - 1}"
                    )
                )
            y = np.eye(step.one_hot, dtype=np.float32)[labels]
    return Split(x, y, split.sample_weight)


def scale_aligned(x: np.ndarray, scale: np.float32) -> np.ndarray:
    """`x / scale` in float (integers become float32 first), computed into memory TensorFlow can share."""
    dtype = np.result_type(x.dtype, np.float32) if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    out = cast_aligned(x, dtype)
    return np.divide(out, scale, out=out)


def preprocess_element(x: Any, y: Any, steps: list[PreprocessStep]) -> tuple[Any, Any]:
    """The `data.preprocess` steps on one streamed (x, y) element, as TensorFlow ops computing what `preprocess` computes."""
    from kerasrun._tf import tf

    for step in steps:
        if step.reshape is not None:
            x = tf.reshape(x, step.reshape)
        elif step.scale is not None:
            x = (x if x.dtype.is_floating else tf.cast(x, tf.float32)) / tf.constant(
                step.scale, x.dtype if x.dtype.is_floating else tf.float32
            )
        elif step.cast is not None:
            x = tf.cast(x, tf.as_dtype(np.dtype(step.cast)))
        elif step.one_hot is not None:
            y = tf.one_hot(tf.cast(y, tf.int32), step.one_hot, dtype=tf.float32)
    return x, y
