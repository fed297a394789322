"""Data sources → arrays → preprocessing, weights and validation split → tf.data pipelines."""

from __future__ import annotations

import csv
import gzip
import inspect
import math
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeGuard, cast

import numpy as np

from kerasrun import registry
from kerasrun.config import Config, CsvData, KerasData, NpzData, PythonData, SklearnData, SyntheticData
from kerasrun.epochs import EpochClock
from kerasrun.errors import ConfigError, DataUnavailableError, Problem

DATA_DIR_ENV = "KERASRUN_DATA_DIR"
# Arrays from this size on are shared with TensorFlow instead of copied (see share_with_tensorflow).
SHARE_MIN_BYTES = 1 << 20
TENSOR_ALIGNMENT = 64  # EIGEN_MAX_ALIGN_BYTES of TensorFlow's x86-64 builds (Tensor::IsAligned)
# Keras datasets whose original files Keras reads from a subfolder of its cache (name -> subfolder, files).
RAW_KERAS_FILES = {
    "fashion_mnist": (
        "fashion-mnist",
        ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
    ),
}


# One array, or {name: array} / [array, ...] for a model with several inputs or outputs.
Arrays: TypeAlias = np.ndarray | dict[str, np.ndarray] | list[np.ndarray]


@dataclass
class Split:
    """Features, targets and optional per-sample weights of one split."""

    x: Arrays
    y: Arrays
    sample_weight: Arrays | None = None

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

    def shuffles_train(self, shuffle: bool) -> bool:
        """Whether the training pipeline reshuffles every epoch, given train.shuffle."""
        return shuffle and (isinstance(self.train, Split) or self.shuffle_batches)


# --------------------------------------------------------------------------- entry point


def load_data(config: Config) -> Data:
    """Read the config's data source and prepare train/validation/test; raise ConfigError on bad data."""
    data = read_source(config)
    check_arrays(data, config)
    if isinstance(data.train, Split):
        data = replace(data, train=preprocess(data.train, config, "train"), test=data.test and preprocess(data.test, config, "test"))
        check_finite(data, config)
    elif config.data.preprocess:
        raise ConfigError(config.problem(("data", "preprocess"), "preprocess steps apply to arrays; this source gave a tf.data.Dataset"))
    data = split_validation(data, config)
    return replace(data, train=weight_training(data.train, config))


def read_source(config: Config) -> Data:
    """Dispatch on `data.source`."""
    readers = {
        "keras": read_keras,
        "npz": read_npz,
        "csv": read_csv,
        "sklearn": read_sklearn,
        "synthetic": read_synthetic,
        "python": read_python,
    }
    return readers[config.data.source](config)


# --------------------------------------------------------------------------- sources


def read_keras(config: Config) -> Data:
    """A keras.datasets dataset: `<dir>/<name>.npz`, Keras's raw files under `<dir>`, or Keras's download."""
    from kerasrun._tf import keras

    spec = config.data
    assert isinstance(spec, KerasData)  # read_source dispatched on data.source
    module = getattr(keras.datasets, spec.name, None)
    if module is None or not hasattr(module, "load_data"):
        known = [n for n in dir(keras.datasets) if hasattr(getattr(keras.datasets, n), "load_data")]
        raise ConfigError(
            config.problem(("data", "name"), f"keras.datasets has no dataset `{spec.name}`", registry.suggest(spec.name, known))
        )
    data_dir = config.resolve_path(spec.dir) if spec.dir else (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else None)
    if data_dir is not None:
        npz = data_dir / f"{spec.name}.npz"
        if npz.is_file():
            with open_npz(npz, config, ("data", "name")) as arrays:
                missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
                if missing:
                    raise ConfigError(config.problem(("data", "name"), f"{npz} lacks arrays {missing}; it has {sorted(arrays.keys())}"))
                return Data(Split(arrays["x_train"], arrays["y_train"]), test=Split(arrays["x_test"], arrays["y_test"]), data_dir=data_dir)
        if spec.name in RAW_KERAS_FILES:
            subdir, files = RAW_KERAS_FILES[spec.name]
            paths = [data_dir / subdir / f for f in files]
            if all(p.is_file() for p in paths):
                y_train, x_train, y_test, x_test = (read_idx_gz(p) for p in paths)
                return Data(Split(x_train, y_train), test=Split(x_test, y_test), data_dir=data_dir)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # Keras raises plain Exception on download failure
        where = f"`{spec.name}.npz` (keys x_train, y_train, x_test, y_test)"
        if spec.name in RAW_KERAS_FILES:
            subdir, files = RAW_KERAS_FILES[spec.name]
            where += f" or {subdir}/{{{', '.join(files)}}}"
        looked = f"; looked in {data_dir}" if data_dir else ""
        raise DataUnavailableError(
            config.problem(
                ("data", "name"),
                f"dataset `{spec.name}` is not available offline and Keras could not download it ({str(exc).splitlines()[0][:160]}){looked}",
                hint=f"put {where} in a folder and set data.dir or {DATA_DIR_ENV} to it",
            )
        ) from None
    return Data(Split(x_train, y_train), test=Split(x_test, y_test))


def read_idx_gz(path: Path) -> np.ndarray:
    """Read a gzip'd IDX file (the MNIST family's format): magic gives the rank, then the dims."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def read_npz(config: Config) -> Data:
    """Arrays from an .npz file, by key."""
    spec = config.data
    assert isinstance(spec, NpzData)  # read_source dispatched on data.source
    path = config.resolve_path(spec.path)
    if not path.is_file():
        raise ConfigError(config.problem(("data", "path"), f"no such file: {path}"))
    with open_npz(path, config, ("data", "path")) as arrays:
        keys = sorted(arrays.keys())

        def get(field: str, required: bool) -> Any:
            key = getattr(spec, field)
            if key is None:
                return None
            named = key if isinstance(key, dict) else {None: key}
            missing = [(name, k) for name, k in named.items() if k not in arrays]
            if missing:
                if required or field in spec.model_fields_set:
                    raise ConfigError(
                        [
                            config.problem(
                                ("data", field) + ((name,) if name else ()), f"{path.name} has no array `{k}`", f"it has: {', '.join(keys)}"
                            )
                            for name, k in missing
                        ]
                    )
                return None
            found = {name: arrays[k] for name, k in named.items()}
            for name, k in named.items():
                if not isinstance(found[name], np.ndarray):  # a member that isn't a .npy comes back as raw bytes
                    raise ConfigError(config.problem(("data", field), f"{path.name}: `{k}` is not a NumPy array"))
            return found if isinstance(key, dict) else found[None]

        x, y = get("x", True), get("y", True)
        sw = get("sample_weight", True)
        x_test, y_test = get("x_test", False), get("y_test", False)
    test = Split(x_test, y_test) if x_test is not None and y_test is not None else None
    return Data(Split(x, y, sw), test=test)


@contextmanager
def open_npz(path: Path, config: Config, loc: tuple[Any, ...]) -> Iterator[Any]:
    """np.load of an .npz (arrays only, never pickles); a file that can't be read is a located problem naming the cause.

    Arrays are read lazily, so errors of a truncated member surface while they are used: the whole
    block is covered.
    """
    with path.open("rb") as f:
        start = f.read(4)
    if start != b"PK\x03\x04":  # every .npz is a zip archive; anything else np.load would try to unpickle
        raise ConfigError(config.problem(loc, f"cannot read {path.name}: it is not a NumPy .npz file (not a zip archive)"))
    try:
        with np.load(path, allow_pickle=False) as arrays:
            yield arrays
    except ConfigError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            why = "it holds pickled Python objects; kerasrun reads plain numeric arrays only (np.savez of NumPy arrays)"
        else:
            why = f"it is not a NumPy .npz file ({exc})"
        raise ConfigError(config.problem(loc, f"cannot read {path.name}: {why}")) from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ConfigError(
            config.problem(loc, f"cannot read {path.name}: not a complete .npz file (truncated, or not a zip archive: {exc})")
        ) from None
    except MemoryError:
        raise ConfigError(config.problem(loc, f"cannot read {path.name}: it declares an array too large to load")) from None


def read_csv_table(path: Path, spec: CsvData, config: Config, loc: tuple[Any, ...]) -> Split:
    """Feature columns and target column(s) of a CSV file; {name: columns} / {name: column} for several inputs/outputs."""
    if not path.is_file():
        raise ConfigError(config.problem(loc, f"no such file: {path}"))
    try:
        with path.open(newline="", encoding=spec.encoding) as f:
            rows = list(csv.reader(f, delimiter=spec.delimiter))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            config.problem(loc, f"{path.name} is not {spec.encoding} text (byte {exc.start})", "set data.encoding, e.g. encoding: latin-1")
        ) from None
    except LookupError:
        raise ConfigError(
            config.problem(("data", "encoding"), f"unknown text encoding `{spec.encoding}`", "e.g. utf-8, latin-1, cp1252")
        ) from None
    except (OSError, csv.Error) as exc:
        raise ConfigError(config.problem(loc, f"cannot read {path.name}: {exc}")) from None
    if not rows:
        raise ConfigError(config.problem(loc, f"{path.name} is empty"))
    header = rows[0]
    numbered = [(number, row) for number, row in enumerate(rows[1:], start=2) if row]  # (line, row); blank lines are no rows
    body = [row for _, row in numbered]
    problems = check_csv_shape(path, header, rows, config, loc)
    if not problems and not body:
        problems.append(config.problem(loc, f"{path.name} has a header but no rows"))
    if problems:
        raise ConfigError(problems)
    targets = spec.target if isinstance(spec.target, dict) else {None: spec.target}
    features = (
        spec.features if isinstance(spec.features, dict) else {None: spec.features or [c for c in header if c not in targets.values()]}
    )
    problems = [
        config.problem(
            ("data", key) + ((group,) if group else ()),
            f"{path.name} has no column `{name}`",
            registry.suggest(name, header) or f"columns: {', '.join(header)}",
        )
        for key, groups in (("target", {g: [c] for g, c in targets.items()}), ("features", features))
        for group, names in groups.items()
        for name in names
        if name not in header
    ]
    if problems:
        raise ConfigError(problems)
    index = {name: i for i, name in enumerate(header)}
    try:
        x = {
            group: np.array([[float(row[index[c]]) for c in columns] for row in body], dtype=np.float32)
            for group, columns in features.items()
        }
    except ValueError:
        raise ConfigError(first_non_number(path, header, numbered, features, config)) from None
    y = {group: column_values([row[index[column]] for row in body]) for group, column in targets.items()}
    # The None key is the single unnamed group: unwrap it; otherwise every key is a name.
    return Split(cast(Arrays, x.get(None, x)), cast(Arrays, y.get(None, y)))


def check_csv_shape(path: Path, header: list[str], rows: list[list[str]], config: Config, loc: tuple[Any, ...]) -> list[Problem]:
    """Distinct column names, and as many fields in every row as in the header."""
    problems = []
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        problems.append(config.problem(loc, f"{path.name} names columns more than once: {', '.join(duplicated)}"))
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(header):
            problems.append(
                config.problem(
                    loc, f"{path.name} line {number} has {len(row)} fields, the header {len(header)}", "check the delimiter and quoting"
                )
            )
            break  # the first ragged row is enough to find the cause
    return problems


def first_non_number(
    path: Path, header: list[str], numbered: list[tuple[int, list[str]]], features: dict[Any, list[str]], config: Config
) -> Problem:
    """Where the first feature value that is not a number is: line and column."""
    index = {name: i for i, name in enumerate(header)}
    for number, row in numbered:
        for columns in features.values():
            for column in columns:
                try:
                    float(row[index[column]])
                except ValueError:
                    return config.problem(
                        ("data", "features"), f"{path.name} line {number}, column `{column}`: {row[index[column]]!r} is not a number"
                    )
    return config.problem(("data", "features"), f"{path.name}: a feature value is not a number")


def column_values(raw: list[str]) -> np.ndarray:
    """A target column: numbers (integers when whole), or text labels as integer classes in sorted order."""
    try:
        values = np.array([float(v) for v in raw], dtype=np.float32)
    except ValueError:
        classes = sorted(set(raw))
        return np.array([classes.index(v) for v in raw], dtype=np.int64)
    return values.astype(np.int64) if np.all(values == np.round(values)) else values


def read_csv(config: Config) -> Data:
    """A CSV table, with an optional test file or seeded test fraction."""
    spec = config.data
    assert isinstance(spec, CsvData)  # read_source dispatched on data.source
    train = read_csv_table(config.resolve_path(spec.path), spec, config, ("data", "path"))
    if spec.test_path:
        return Data(train, test=read_csv_table(config.resolve_path(spec.test_path), spec, config, ("data", "test_path")))
    if spec.test_fraction:
        return split_test(train, spec.test_fraction, config.seed, stratify=False, config=config)
    return Data(train)


def read_sklearn(config: Config) -> Data:
    """A real dataset bundled with scikit-learn, split into train/test with the config's seed."""
    import sklearn.datasets

    spec = config.data
    assert isinstance(spec, SklearnData)  # read_source dispatched on data.source
    loader = getattr(sklearn.datasets, f"load_{spec.name}")
    x, y = loader(return_X_y=True)
    return split_test(Split(x.astype(np.float32), y.astype(np.int64)), spec.test_fraction, config.seed, spec.stratify, config)


def read_synthetic(config: Config) -> Data:
    """Seeded generated data: Gaussian blobs per class, or random arrays."""
    spec = config.data
    assert isinstance(spec, SyntheticData)  # read_source dispatched on data.source
    rng = np.random.default_rng(config.seed)
    x: Arrays
    y: Arrays
    if spec.generator == "blobs":
        assert spec.samples_per_class is not None  # check_generator_keys requires it for blobs
        means = np.asarray(spec.means, dtype=np.float64)
        cov = np.asarray(spec.cov, dtype=np.float64)
        if cov.shape != (means.shape[1], means.shape[1]):
            raise ConfigError(
                config.problem(("data", "cov"), f"covariance must be {means.shape[1]}x{means.shape[1]} to match the means, got {cov.shape}")
            )
        x = np.concatenate([rng.multivariate_normal(m, cov, size=spec.samples_per_class) for m in means]).astype(np.float32)
        y = np.repeat(np.arange(len(means)), spec.samples_per_class).astype(np.int64)
    else:
        assert spec.x_shape is not None and spec.samples is not None  # check_generator_keys requires them for random
        x = map_shapes(spec.x_shape, lambda shape: rng.standard_normal((spec.samples, *shape)).astype(np.float32))
        if isinstance(spec.classes, dict) or isinstance(spec.y_shape, dict):
            # Several outputs: float targets by shape, integer class targets by count, each named.
            # A dict beside a plain list/int (e.g. classes: {a: 2}, y_shape: [2]) passes the schema and raises
            # AttributeError here; the ignores below keep that behaviour rather than hide it.
            y = {
                name: rng.standard_normal((spec.samples, *shape)).astype(np.float32)
                for name, shape in (spec.y_shape or {}).items()  # type: ignore[union-attr]  # see above
            }
            y |= {
                name: rng.integers(0, count, size=spec.samples).astype(np.int64)
                for name, count in (spec.classes or {}).items()  # type: ignore[union-attr]  # see above
            }
        elif spec.classes is not None:
            y = rng.integers(0, spec.classes, size=spec.samples).astype(np.int64)
        else:
            assert spec.y_shape is not None  # check_generator_keys requires classes or y_shape
            y = rng.standard_normal((spec.samples, *spec.y_shape)).astype(np.float32)
    if spec.test_fraction:
        return split_test(Split(x, y), spec.test_fraction, config.seed, stratify=False, config=config)
    return Data(Split(x, y))


def map_shapes(shapes: Any, make: Any) -> Any:
    """make(shape) for one shape, or for each of a {name: shape} mapping."""
    return {name: make(shape) for name, shape in shapes.items()} if isinstance(shapes, dict) else make(shapes)


def check_call(function: Any, kwargs: dict[str, Any]) -> str | None:
    """None when `function(**kwargs)` binds; else why not (an unknown or a missing argument)."""
    try:
        inspect.signature(function).bind(**kwargs)
    except TypeError as exc:
        return f"cannot be called with these kwargs: {exc}"
    except ValueError:  # builtins without a signature: let the call tell
        return None
    return None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message."""
    text = str(exc).strip()
    return next((line for line in text.splitlines() if line.strip()), type(exc).__name__)


def read_python(config: Config) -> Data:
    """Call `data.function(**kwargs)`: arrays (x, y), ((x, y), (x_test, y_test)), a dict of arrays, or datasets."""
    spec = config.data
    assert isinstance(spec, PythonData)  # read_source dispatched on data.source
    loc = ("data", "function")
    try:
        function = registry.import_object(spec.function)
    except registry.SpecError as exc:
        raise ConfigError(config.problem(loc, str(exc), exc.hint)) from None
    if (problem := check_call(function, spec.kwargs)) is not None:
        raise ConfigError(config.problem(("data", "kwargs") if spec.kwargs else loc, problem))
    try:
        result = function(**spec.kwargs)
    except Exception as exc:  # the user's loader failed: say where, before any folder exists
        raise ConfigError(config.problem(loc, f"{spec.function} raised {type(exc).__name__}: {first_line(exc)}")) from None
    try:
        return data_of(result, lambda: function(**spec.kwargs))
    except NotData as exc:  # a value of the wrong kind altogether
        raise ConfigError(config.problem(loc, f"{spec.function} returned {exc}")) from None
    except Exception as exc:  # a wrong shape of result, or the user's generator failing while it is read
        raise ConfigError(
            config.problem(loc, f"{spec.function} returned data kerasrun can't read: {type(exc).__name__}: {first_line(exc)}")
        ) from None


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
        train, validation, test = (split_or_dataset(result.get(key)) for key in ("train", "validation", "test"))
        return Data(train, validation=validation, test=test)
    if isinstance(result, dict) and "x_train" in result:
        test = Split(as_arrays(result["x_test"]), as_arrays(result["y_test"])) if "x_test" in result else None
        sw = result.get("sample_weight")
        train = Split(as_arrays(result["x_train"]), as_arrays(result["y_train"]), None if sw is None else np.asarray(sw))
        return Data(train, test=test)
    if isinstance(result, tuple) and len(result) == 2:
        first, second = result
        if isinstance(first, tuple) and isinstance(second, tuple):
            return Data(Split(np.asarray(first[0]), np.asarray(first[1])), test=Split(np.asarray(second[0]), np.asarray(second[1])))
        return Data(Split(np.asarray(first), np.asarray(second)))
    raise NotData(
        f"{type(result).__name__}; expected (x, y), ((x, y), (x_test, y_test)), a dict with x_train/y_train, or a tf.data.Dataset"
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


def split_test(split: Split, fraction: float, seed: int, stratify: bool, config: Config) -> Data:
    """Hold out a seeded test fraction (stratified by label when asked)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(split))
    try:
        train_index, test_index = train_test_split(index, test_size=fraction, random_state=seed, stratify=split.y if stratify else None)
    except ValueError as exc:  # too few samples (or of one class) for this fraction
        raise ConfigError(
            config.problem(("data", "test_fraction"), f"cannot hold out a test fraction of {fraction} from {len(split)} samples: {exc}")
        ) from None
    return Data(split.take(np.sort(train_index)), test=split.take(np.sort(test_index)))


# --------------------------------------------------------------------------- preprocessing and checks


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


def cast_aligned(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`x.astype(dtype)`, into memory TensorFlow can share when the dtype is numeric."""
    if dtype.kind not in "fiub" or dtype.itemsize == 0:
        return x.astype(dtype)  # strings, objects, ...: as NumPy casts them (never shared)
    out = empty_aligned(x.shape, dtype)
    out[...] = x
    return out


# What each array of a split is called in the config, by source (for the located message).
ARRAY_KEYS = {
    "npz": {
        ("train", "x"): "x",
        ("train", "y"): "y",
        ("train", "sample_weight"): "sample_weight",
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
    for split_name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        if not isinstance(split, Split):
            continue
        named = split.named_arrays()
        lengths: dict[str, int] = {}
        for array_name, array in named:
            loc, label = array_loc(config, split_name, array_name), f"{data_file(config)}{array_name} of the {split_name} split"
            if array.ndim == 0:
                problems.append(config.problem(loc, f"{label} is a single value, not an array with one row per sample"))
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
    for split_name, split in (("train", data.train), ("test", data.test)):
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


# --------------------------------------------------------------------------- validation split and weights


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
    if not isinstance(data.train, Split):
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


def class_weight_table(
    config: Config, labels: np.ndarray | None, class_weight: Any, by_class: dict[int, float] | None, loc: tuple[Any, ...]
) -> np.ndarray | None:
    """Per-class weight table (index = label) from a class_weight rule and a by_class rule, multiplied."""
    if class_weight is None and by_class is None:
        return None
    if labels is None:
        if class_weight == "balanced":
            raise ConfigError(config.problem(loc, "`balanced` needs array data to count the labels"))
        present = None
    else:
        if not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
            raise ConfigError(
                config.problem(loc, "class weights need integer class labels; these targets are continuous (a regression output?)")
            )
        present = set(int(v) for v in np.unique(labels))
    rules: list[tuple[tuple[Any, ...], dict[int, float]]] = []
    if class_weight == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        assert present is not None  # `balanced` without labels raised above
        classes = np.array(sorted(present))
        weights = compute_class_weight("balanced", classes=classes, y=labels)
        rules.append((loc, {int(c): float(w) for c, w in zip(classes, weights, strict=True)}))
    elif class_weight is not None:
        rules.append((loc, class_weight))
    if by_class is not None:
        rules.append((("train", "sample_weight", "by_class"), by_class))
    problems: list[Problem] = []
    for rule_loc, table in rules:
        for label in table:
            if present is not None and label not in present:
                problems.append(
                    config.problem(rule_loc + (str(label),), f"{label} is not a label in the training data", f"labels: {sorted(present)}")
                )
    if problems:
        raise ConfigError(problems)
    size = max([max(t) for _, t in rules if t] + ([max(present)] if present else [0])) + 1
    out = np.ones(size, dtype=np.float32)
    for _, table in rules:
        for label, weight in table.items():
            out[label] *= weight
    return out


def is_per_output(class_weight: Any) -> TypeGuard[dict[str, dict[int, float] | Literal["balanced"]]]:
    """True for {output_name: rule} class weights."""
    return isinstance(class_weight, dict) and any(isinstance(k, str) for k in class_weight)


def weight_training(train: Any, config: Config) -> Any:
    """Fold class weights and per-class rules into per-sample weights (multiplied with the source's)."""
    spec = config.train
    loc = ("train", "class_weight")
    by_class = spec.sample_weight.by_class if spec.sample_weight is not None else None
    if isinstance(train, Split) and isinstance(train.y, list) and (spec.class_weight is not None or by_class is not None):
        raise ConfigError(config.problem(loc, "class weights with several outputs need named targets: return y as {output name: array}"))
    if isinstance(train, Split) and isinstance(train.y, dict):
        return weight_outputs(train, config)
    if is_per_output(spec.class_weight):
        raise ConfigError(config.problem(loc, "class weights keyed by output name need a model with several outputs (and named targets)"))
    if isinstance(train, Split):
        if spec.class_weight is None and by_class is None:
            return train
        labels = class_labels(train.y)
        table = class_weight_table(config, labels, spec.class_weight, by_class, loc)
        assert table is not None  # a class_weight or by_class rule is set
        weights = table[labels.astype(np.int64)]
        if train.sample_weight is not None:
            # Only named targets (handled by weight_outputs) come with named weights: here it is one array.
            weights = weights * cast(np.ndarray, train.sample_weight).astype(np.float32)
        return Split(train.x, train.y, weights.astype(np.float32))
    table = class_weight_table(config, None, spec.class_weight, by_class, loc)
    return train if table is None else weight_dataset(train, table)


def weight_outputs(train: Split, config: Config) -> Split:
    """Per-output sample weights for a model with several outputs: class weights keyed by output name."""
    assert isinstance(train.y, dict)  # weight_training sends only named targets here
    spec = config.train
    loc = ("train", "class_weight")
    if spec.sample_weight is not None:
        raise ConfigError(
            config.problem(
                ("train", "sample_weight"), "with several outputs, give per-class weights as class_weight: {output: {label: weight}}"
            )
        )
    if spec.class_weight is None:
        return train
    if not is_per_output(spec.class_weight):
        raise ConfigError(
            config.problem(
                loc,
                "with several outputs, key class weights by output name",
                f"e.g. class_weight: {{{next(iter(train.y))}: {{0: 1.0, 1: 2.0}}}}",
            )
        )
    unknown = [name for name in spec.class_weight if name not in train.y]
    if unknown:
        raise ConfigError(
            [
                config.problem(
                    loc + (name,),
                    f"the targets have no output `{name}`",
                    registry.suggest(name, list(train.y)) or f"outputs: {', '.join(train.y)}",
                )
                for name in unknown
            ]
        )
    weights = {}
    for name, targets in train.y.items():
        rule = spec.class_weight.get(name)
        base = np.ones(len(targets), np.float32) if train.sample_weight is None else np.asarray(train.sample_weight, np.float32)
        if rule is None:
            weights[name] = base
            continue
        labels = class_labels(targets)
        table = class_weight_table(config, labels, rule, None, loc + (name,))
        assert table is not None  # rule is set
        weights[name] = table[labels.astype(np.int64)] * base
    return Split(train.x, train.y, weights)


def weight_dataset(dataset: Any, table: np.ndarray) -> Any:
    """Multiply each batch's sample weights by the class weights of its labels."""
    from kerasrun._tf import tf

    lookup = tf.constant(table)

    @tf.autograph.experimental.do_not_convert  # static shape tests only; see make_dataset
    def add_weights(x: Any, y: Any, sw: Any = None) -> tuple[Any, Any, Any]:
        labels = tf.argmax(y, axis=-1) if y.shape.rank and y.shape.rank >= 2 and y.shape[-1] and y.shape[-1] > 1 else tf.reshape(y, [-1])
        weights = tf.gather(lookup, tf.cast(labels, tf.int32))
        return x, y, weights if sw is None else weights * tf.cast(sw, tf.float32)

    return dataset.map(add_weights)


# --------------------------------------------------------------------------- tf.data


def make_dataset(
    split: Any,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    outputs: list[str] | None = None,
    clock: EpochClock | None = None,
    steps_per_epoch: int | None = None,
) -> Any:
    """A batched, prefetched tf.data pipeline whose order is a pure function of (seed, epoch).

    With `shuffle`, pass p over array data is in the order `stateless_shuffle(range(n), seed=(seed, p))`,
    where p is the epoch `clock` holds when the pass starts. With `steps_per_epoch`, the data is an
    endless stream of such passes and epoch e reads its batches e x steps_per_epoch onwards, whatever
    the pass boundaries — so every epoch trains exactly that many steps and a resumed run reads
    exactly what the uninterrupted run read. A tf.data source is streamed the same way; its own
    order is kerasrun's to control only where kerasrun shuffles it (a validation_split's training
    part). Per-output sample weights go to Keras as a tuple in the model's output order (`outputs`).
    """
    from kerasrun._tf import tf

    if not isinstance(split, Split):  # a tf.data.Dataset (or generator) from a python source
        if steps_per_epoch is not None:
            return stream_batches(split, clock or EpochClock(), steps_per_epoch, shuffle)
        return reshuffle_batches(split, clock or EpochClock()) if shuffle else split
    sample_weight: Arrays | tuple[np.ndarray, ...] | None = split.sample_weight
    if isinstance(sample_weight, dict):
        sample_weight = tuple(sample_weight[name] for name in (outputs or list(sample_weight)))
    parts = tuple(a for a in (split.x, split.y, sample_weight) if a is not None)
    tensors = tf.nest.map_structure(share_with_tensorflow, parts)
    index = index_batches(len(split), batch_size, shuffle, seed, clock, steps_per_epoch)
    # Gathering whole batches by index is far cheaper than slicing and batching single samples.
    # No AutoGraph: the function has no Python control flow, and converting it re-parses this file (~0.2 s).
    gather = tf.autograph.experimental.do_not_convert(lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), tensors))
    batches = index.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    # tf.data's static graph rewrites would serialize the captured arrays into the graph (a full copy of
    # the training data, 0.4 s for MNIST) and gain nothing: the pipeline is already parallel and prefetched.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return batches.with_options(options)


def index_batches(n: int, batch_size: int, shuffle: bool, seed: int, clock: EpochClock | None, steps_per_epoch: int | None) -> Any:
    """Batches of sample indices: one pass in order, one reshuffled pass per epoch, or an endless stream of passes."""
    from kerasrun._tf import tf

    if not shuffle and steps_per_epoch is None:
        return tf.data.Dataset.range(n).batch(batch_size)
    clock = clock or EpochClock()
    per_pass = math.ceil(n / batch_size)

    def one_pass(number: Any) -> Any:
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.constant(seed, tf.int64), number]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    if steps_per_epoch is None:  # one pass per epoch, in the epoch's order
        index = tf.data.Dataset.range(1).flat_map(lambda _: one_pass(clock.read()))
        return index.apply(tf.data.experimental.assert_cardinality(per_pass))

    def stream_from_epoch(_: Any) -> Any:
        start = clock.read() * steps_per_epoch  # the global batch this epoch starts at
        passes = tf.data.Dataset.range(start // per_pass, tf.int64.max).flat_map(one_pass)
        return passes.skip(start % per_pass)

    index = tf.data.Dataset.range(1).flat_map(stream_from_epoch)
    return index.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def stream_batches(dataset: Any, clock: EpochClock, steps_per_epoch: int, shuffle: bool) -> Any:
    """A finite tf.data dataset of batches as an endless stream of passes, read from the clock's epoch x steps_per_epoch on.

    Pass p is reshuffled with op seed p + 1 when `shuffle` (see reshuffle_batches). A dataset of
    unknown length is simply repeated; on resume its stream is skipped to the epoch's first batch by reading.
    """
    from kerasrun._tf import tf

    per_pass = int(dataset.cardinality())

    def one_pass(number: Any) -> Any:
        return dataset.shuffle(per_pass, seed=number + 1) if shuffle else dataset

    def stream_from_epoch(_: Any) -> Any:
        start = clock.read() * steps_per_epoch  # the global batch this epoch starts at
        if per_pass <= 0:
            return dataset.repeat().skip(start)
        return tf.data.Dataset.range(start // per_pass, tf.int64.max).flat_map(one_pass).skip(start % per_pass)

    stream = tf.data.Dataset.range(1).flat_map(stream_from_epoch)
    return stream.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def reshuffle_batches(dataset: Any, clock: EpochClock) -> Any:
    """A finite tf.data dataset of batches, in a new order each epoch that depends only on the epoch.

    tf.data draws a shuffle's order from the global seed (kerasrun sets it to the config's seed before
    building the model) and this op seed; epoch + 1 because seeds (0, 0) would mean "random".
    """
    from kerasrun._tf import tf

    batches = int(dataset.cardinality())
    shuffled = tf.data.Dataset.range(1).flat_map(lambda _: dataset.shuffle(batches, seed=clock.read() + 1))
    return shuffled.apply(tf.data.experimental.assert_cardinality(batches))


def share_with_tensorflow(array: np.ndarray) -> Any:
    """A tensor over the array's own memory (DLPack), falling back to TensorFlow's copy.

    `tf.convert_to_tensor` copies into fresh 4 KiB pages; for MNIST's 157 MB that alone cost
    0.4-0.8 s of page faults here, more than a whole training epoch. NumPy's buffer is already
    resident, so the tensor borrows it. TensorFlow assumes tensors never change: kerasrun never
    writes into loaded arrays (not made read-only, since NumPy refuses DLPack export of those).
    """
    from kerasrun._tf import tf

    array = np.asarray(array)
    if array.nbytes < SHARE_MIN_BYTES or array.dtype.kind not in "fiu":
        return tf.convert_to_tensor(array)
    if not array.flags.c_contiguous or array.ctypes.data % TENSOR_ALIGNMENT:
        array = cast_aligned(array, array.dtype)  # TensorFlow's kernels need aligned, contiguous memory
    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except (BufferError, TypeError, ValueError, tf.errors.OpError):  # e.g. read-only or big-endian arrays
        return tf.convert_to_tensor(array)


def empty_aligned(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array starting on a TENSOR_ALIGNMENT boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + TENSOR_ALIGNMENT, dtype=np.uint8)
    offset = -raw.ctypes.data % TENSOR_ALIGNMENT
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def input_sample_shape(split: Any) -> tuple[int, ...] | None:
    """Per-sample feature shape of array data (None for datasets)."""
    if not isinstance(split, Split) or isinstance(split.x, dict):
        return None
    # A list of arrays (e.g. a single input given as [x]) has no .shape and raises AttributeError here; kept as is.
    return tuple(split.x.shape[1:])  # type: ignore[union-attr]
