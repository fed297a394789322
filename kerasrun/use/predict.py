"""`kerasrun predict`: a finished run's model on a file of raw features (.npy, .npz, .csv), the run's preprocessing applied."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.schema import Config
from kerasrun.data import Split, preprocess
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.io import write_atomic, write_text_atomic
from kerasrun.use.evaluate import load_run

MAGIC = {".npz": b"PK\x03\x04", ".npy": b"\x93NUMPY"}  # how the files np.load reads begin (an .npz is a zip archive)


def input_problem(path: Path, message: str, hint: str | None = None) -> ConfigError:
    """A problem with the --input file."""
    return ConfigError(Problem(key="--input", message=message, file=str(path), hint=hint))


def read_input(path: Path) -> np.ndarray:
    """Features from .npy, .npz (key `x`, `x_test`, or its only array) or .csv (numbers, optional header)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise input_problem(path, "no such file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise input_problem(path, "is not a regular file")
    if suffix not in (".npy", ".npz", ".csv"):
        raise input_problem(path, f"unsupported file type `{suffix}`", "use .npy, .npz or .csv")
    with path.open("rb") as f:
        start = f.read(6)
    if suffix in MAGIC and not start.startswith(MAGIC[suffix]):
        raise input_problem(path, f"it is not a NumPy {suffix} file")  # np.load would try to unpickle it
    try:
        if suffix == ".csv":
            return read_csv_input(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.keys())
            key = next((k for k in ("x", "x_test", "inputs") if k in arrays), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise input_problem(path, f"cannot tell which array holds the features: {keys}", "name it `x`")
            array = arrays[key]
            if not isinstance(array, np.ndarray):  # a member that isn't a .npy comes back as raw bytes
                raise input_problem(path, f"its member `{key}` is not a NumPy array")
            return array
    except ConfigError:
        raise
    except ValueError as exc:
        why = "it holds pickled Python objects; kerasrun reads plain numeric arrays only" if "allow_pickle" in str(exc) else str(exc)
        raise input_problem(path, f"cannot read it: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise input_problem(path, f"cannot read it: not a complete {suffix} file ({exc})") from None
    except MemoryError:
        raise input_problem(path, "it declares an array too large to load") from None


def read_csv_input(path: Path) -> np.ndarray:
    """Numbers from a CSV file, one row per sample; a first row that isn't numbers is a header."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [(number, row) for number, row in enumerate(csv.reader(f), start=1) if row]
    except UnicodeDecodeError as exc:
        raise input_problem(path, f"not UTF-8 text (byte {exc.start})") from None
    if rows and not any(is_number(v) for v in rows[0][1]):  # a header has no numbers; a data row with a typo keeps its line
        rows = rows[1:]  # a header row
    widths = {len(row) for _, row in rows}
    if len(widths) > 1:
        number, row = next((n, r) for n, r in rows if len(r) != len(rows[0][1]))
        raise input_problem(path, f"line {number} has {len(row)} fields, line {rows[0][0]} has {len(rows[0][1])}")
    for number, row in rows:
        bad = next((v for v in row if not is_number(v)), None)
        if bad is not None:
            raise input_problem(path, f"line {number}: {bad!r} is not a number")
    return np.array([row for _, row in rows], dtype=np.float32).reshape(len(rows), -1)


def is_number(text: str) -> bool:
    """True when a CSV field reads as a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_input(path: Path, x: np.ndarray, config: Config) -> None:
    """The --input features as training data must be: an array of samples, numbers, finite, at least one row."""
    if x.ndim == 0 or len(x) == 0:
        raise input_problem(path, "holds no samples (an empty array)")
    if x.dtype.kind not in "biuf":
        raise input_problem(path, f"holds {x.dtype} values; features must be numbers")
    if x.dtype.kind == "f" and not config.data.allow_nonfinite and not np.isfinite(x).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise input_problem(
            path, f"holds NaN or inf at index {where}", "the run was trained on finite numbers (data.allow_nonfinite: false)"
        )


def check_input_fits(path: Path, features: np.ndarray, model: Any) -> None:
    """The preprocessed features must fit the model's one input, per sample."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        raise input_problem(path, f"this model has {len(inputs)} inputs; predict takes one array of features")
    if not inputs:
        return  # a subclassed model declares no input shape
    expected = tuple(inputs[0].shape[1:])
    got = tuple(features.shape[1:])
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got, strict=False)):
        raise input_problem(path, f"its samples have shape {got} after the run's preprocessing, but the model takes {expected}")


def write_output(path: Path, predictions: np.ndarray) -> None:
    """Predictions to .npy, .npz (key `predictions`) or .csv (one row per sample), written atomically."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        write_atomic(path, lambda f: np.save(f, predictions))
    elif suffix == ".npz":
        write_atomic(path, lambda f: np.savez(f, predictions=predictions))
    else:
        flat = predictions.reshape(len(predictions), -1)
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow([f"output_{i}" for i in range(flat.shape[1])])
        writer.writerows(flat.tolist())
        write_text_atomic(path, text.getvalue())


def predict_run(run_dir: Path, input_path: Path, output_path: Path, trust: bool = False) -> tuple[int, ...]:
    """Apply the run's feature preprocessing to a file, predict, and write the predictions; return their shape."""
    if output_path.suffix.lower() not in (".npy", ".npz", ".csv"):
        raise ConfigError(
            Problem(
                key="--output",
                message=f"unsupported file type `{output_path.suffix}`",
                file=str(output_path),
                hint="use .npy, .npz or .csv",
            )
        )
    if output_path.resolve() == input_path.resolve():
        raise ConfigError(
            Problem(key="--output", message="is the --input file; predictions would overwrite the features", file=str(output_path))
        )
    if output_path.is_dir():
        raise ConfigError(
            Problem(key="--output", message="is a folder; give a file name in it, e.g. predictions.npy", file=str(output_path))
        )
    if not output_path.parent.is_dir():  # checked before the model loads: a long predict must not fail at its last step
        what = "is not a folder" if output_path.parent.exists() else "does not exist"
        raise ConfigError(
            Problem(
                key="--output", message=f"its folder {output_path.parent} {what}", file=str(output_path), hint="create the folder first"
            )
        )
    config, model = load_run(run_dir, trust)
    x = read_input(input_path)
    check_input(input_path, x, config)
    feature_steps = [s for s in config.data.preprocess if s.one_hot is None]
    features = preprocess(
        Split(x, np.zeros(len(x))),
        config.model_copy(update={"data": config.data.model_copy(update={"preprocess": feature_steps})}),
        "input",
    ).x
    check_input_fits(input_path, np.asarray(features), model)
    batch = config.evaluate.batch_size or config.train.batch_size
    predictions = np.asarray(model.predict(features, batch_size=batch, verbose=0))
    write_output(output_path, predictions)
    return tuple(predictions.shape)
