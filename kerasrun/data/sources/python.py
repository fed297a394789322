"""`source: python`: a `module:function` returning arrays, a dict of splits, tf.data datasets or a generator of batches."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from kerasrun.config.data import PythonData
from kerasrun.data.arrays import Data, Split, as_arrays
from kerasrun.data.sources.base import Where
from kerasrun.errors import ConfigError, first_line
from kerasrun.imports import SpecError, import_object, suggest


def check_call(function: Any, kwargs: dict[str, Any]) -> str | None:
    """None when `function(**kwargs)` binds; else why not (an unknown or a missing argument)."""
    try:
        inspect.signature(function).bind(**kwargs)
    except TypeError as exc:
        return f"cannot be called with these kwargs: {exc}"
    except ValueError:  # builtins without a signature: let the call tell
        return None
    return None


def read(spec: PythonData, where: Where) -> Data:
    """Call `data.function(**kwargs)`: arrays (x, y), ((x, y), (x_test, y_test)), a dict of arrays, or datasets."""
    loc = ("function",)
    try:
        function = import_object(spec.function)
    except SpecError as exc:
        raise ConfigError(where.problem(loc, str(exc), exc.hint)) from None
    if (problem := check_call(function, spec.kwargs)) is not None:
        raise ConfigError(where.problem(("kwargs",) if spec.kwargs else loc, problem))
    try:
        result = function(**spec.kwargs)
    except Exception as exc:  # the user's loader failed: say where, before any folder exists
        raise ConfigError(where.problem(loc, f"{spec.function} raised {type(exc).__name__}: {first_line(exc)}")) from None
    try:
        return data_of(result, lambda: function(**spec.kwargs))
    except NotData as exc:  # a value of the wrong kind altogether
        raise ConfigError(where.problem(loc, f"{spec.function} returned {exc}")) from None
    except Exception as exc:  # a wrong shape of result, or the user's generator failing while it is read
        raise ConfigError(
            where.problem(loc, f"{spec.function} returned data kerasrun can't read: {type(exc).__name__}: {first_line(exc)}")
        ) from None


SPLIT_KEYS = ("train", "validation", "test")
ARRAY_KEYS = ("x_train", "y_train", "sample_weight", "x_val", "y_val", "x_test", "y_test")


def check_keys(result: dict[Any, Any], known: tuple[str, ...]) -> None:
    """Every key of a returned dict is one kerasrun reads: a misspelled `x_vall` is an error, never silently dropped."""
    unknown = [key for key in result if key not in known]
    if unknown:
        hints = [f"{key!r}" + (f" ({hint.rstrip('?')})" if (hint := suggest(str(key), list(known))) else "") for key in unknown]
        raise NotData(f"a dict with keys kerasrun doesn't read: {', '.join(hints)}; the keys are {', '.join(known)}")


def array_split(result: dict[str, Any], suffix: str) -> Split | None:
    """`x_<suffix>`/`y_<suffix>` of a returned dict as a Split; both or neither."""
    x, y = result.get(f"x_{suffix}"), result.get(f"y_{suffix}")
    if (x is None) != (y is None):
        raise NotData(f"a dict with only one of x_{suffix} and y_{suffix}; give both")
    return None if x is None else Split(as_arrays(x), as_arrays(y))


class NotData(TypeError):
    """A python source returned something that is not data in any shape kerasrun reads."""


def data_of(result: Any, call_again: Any) -> Data:
    """A python source's return value as Data: arrays, a dict of them, datasets, or a generator of batches."""
    from kerasrun._tf import tf

    if inspect.isgenerator(result):
        return Data(generator_dataset(call_again, result))
    if isinstance(result, tf.data.Dataset):
        return Data(result)
    if isinstance(result, dict) and "train" in result:
        check_keys(result, SPLIT_KEYS)
        train, validation, test = (split_or_dataset(result.get(key)) for key in SPLIT_KEYS)
        return Data(train, validation=validation, test=test)
    if isinstance(result, dict) and "x_train" in result:
        check_keys(result, ARRAY_KEYS)
        sw = result.get("sample_weight")
        train = Split(as_arrays(result["x_train"]), as_arrays(result["y_train"]), None if sw is None else np.asarray(sw))
        return Data(train, validation=array_split(result, "val"), test=array_split(result, "test"))
    if isinstance(result, tuple) and len(result) == 2:
        first, second = result
        if isinstance(first, tuple) and isinstance(second, tuple):
            return Data(Split(np.asarray(first[0]), np.asarray(first[1])), test=Split(np.asarray(second[0]), np.asarray(second[1])))
        return Data(Split(np.asarray(first), np.asarray(second)))
    raise NotData(
        f"{type(result).__name__}; expected (x, y), ((x, y), (x_test, y_test)), a dict with x_train/y_train (x_val/y_val, x_test/y_test), "
        "a dict of train/validation/test, or a tf.data.Dataset"
    )


def split_or_dataset(value: Any) -> Any:
    """One entry of a {train:, validation:, test:} result: a tf.data.Dataset, or (x, y[, sample_weight]) arrays."""
    from kerasrun._tf import tf

    if value is None or isinstance(value, tf.data.Dataset):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Split(as_arrays(value[0]), as_arrays(value[1]), np.asarray(value[2]) if len(value) == 3 else None)
    raise NotData(f"{type(value).__name__} in the dict; expected a tf.data.Dataset or (x, y)")


def generator_dataset(make: Any, probe: Any) -> Any:
    """A tf.data.Dataset over a Python generator of batches, re-created for every pass.

    One probe pass gives the element signature and the number of batches, so the dataset has a known
    length (validation_split can take/skip it) and every epoch calls the function anew.
    """
    from kerasrun._tf import tf

    first = next(probe, None)
    if first is None:
        raise ValueError("the generator yielded no batches")
    count = 1 + sum(1 for _ in probe)

    def spec_of(value: Any) -> Any:
        array = np.asarray(value)
        return tf.TensorSpec(shape=(None, *array.shape[1:]), dtype=tf.as_dtype(array.dtype))

    signature = tf.nest.map_structure(spec_of, tuple(first) if isinstance(first, list) else first)
    dataset = tf.data.Dataset.from_generator(make, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(count))
