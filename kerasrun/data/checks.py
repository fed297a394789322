"""The data contract every array split meets before training: numbers, matching lengths, rows, finite values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.model import text_inputs
from kerasrun.config.schema import Config
from kerasrun.data.arrays import Data, Split
from kerasrun.errors import ConfigError, Problem

# What each array of a split is called in the config, by source (for the located message).
ARRAY_KEYS = {
    "npz": {
        ("train", "x"): "x",
        ("train", "y"): "y",
        ("train", "sample_weight"): "sample_weight",
        ("validation", "x"): "x_val",
        ("validation", "y"): "y_val",
        ("test", "x"): "x_test",
        ("test", "y"): "y_test",
    },
    "csv": {("train", "x"): "features", ("train", "y"): "target", ("test", "x"): "features", ("test", "y"): "target"},
}
KINDS = {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers", "V": "records", "M": "dates", "m": "time spans"}


def array_loc(config: Config, split_name: str, array_name: str) -> tuple[Any, ...]:
    """The config key an array comes from: `data.x_test` for an npz file's test features, else `data`."""
    key = ARRAY_KEYS.get(config.data.source, {}).get((split_name, array_name.split("[")[0]))
    return ("data", key) if key else ("data",)


def data_file(config: Config) -> str:
    """`mnist.npz: ` — the data file a message is about, when the source reads one."""
    path = getattr(config.data, "path", None)
    return f"{Path(path).name}: " if path else ""


def check_arrays(data: Data, config: Config) -> None:
    """The arrays of every split: numbers, one row per sample in each, and at least one row — every problem at once."""
    problems: list[Problem] = []
    texts = text_arrays(config)
    for split_name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        if not isinstance(split, Split):
            continue
        named = split.named_arrays()
        lengths: dict[str, int] = {}
        for array_name, array in named:
            loc, label = array_loc(config, split_name, array_name), f"{data_file(config)}{array_name} of the {split_name} split"
            if array.ndim == 0:
                problems.append(config.problem(loc, f"{label} is a single value, not an array with one row per sample"))
            elif array_name in texts and is_text(array):  # a `dtype: string` model input takes text
                lengths[array_name] = len(array)
            elif array_name in texts:
                problems.append(config.problem(loc, f"{label} should hold text for the model's string input; it holds dtype {array.dtype}"))
            elif array.dtype.kind not in "biuf":
                kind = KINDS.get(array.dtype.kind, "values")
                problems.append(
                    config.problem(loc, f"{label} holds {kind} (dtype {array.dtype}); features, targets and weights must be numbers")
                )
            else:
                lengths[array_name] = len(array)
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{name} {n}" for name, n in lengths.items())
            problems.append(
                config.problem(
                    ("data",), f"{data_file(config)}the {split_name} split's arrays differ in length ({sizes}): one row per sample in each"
                )
            )
        elif lengths and 0 in lengths.values():
            problems.append(config.problem(("data",), f"{data_file(config)}the {split_name} split has no rows"))
    if problems:
        raise ConfigError(problems)


def check_finite(data: Data, config: Config) -> None:
    """Refuse NaN/inf in float arrays (naming the array and index) unless data.allow_nonfinite."""
    if config.data.allow_nonfinite:
        return
    for split_name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        if not isinstance(split, Split):
            continue
        named = split.named_arrays()
        for array_name, array in named:
            if array is None or not np.issubdtype(array.dtype, np.floating):
                continue
            bad = ~np.isfinite(array)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ConfigError(
                    config.problem(
                        ("data",),
                        f"{array_name}_{split_name} holds NaN or inf at index {where} ({int(bad.sum())} values)",
                        "fix the data, or set data.allow_nonfinite: true",
                    )
                )


def text_arrays(config: Config) -> set[str]:
    """The names (as Split.named_arrays gives them) of the feature arrays that hold text: those of `dtype: string` model inputs."""
    texts = text_inputs(config)
    names = {f"x[{name}]" for name in texts}
    if texts and len(config.model.inputs or {}) == 1:
        names.add("x")  # a single input's array is plain `x`
    return names


def is_text(array: np.ndarray) -> bool:
    """Strings or bytes: a NumPy text dtype, or Python str/bytes objects."""
    if array.dtype.kind in "US":
        return True
    return array.dtype.kind == "O" and all(isinstance(item, (str, bytes)) for item in array.ravel())
