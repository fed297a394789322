"""`kerasrun predict`: a finished run's model on a file of raw features (.npy, .npz, .csv), the run's preprocessing applied.

A model with several named inputs takes an .npz with one array per input name; a `dtype: string` input takes
text arrays (.npy/.npz of NumPy str or bytes); a model with several outputs writes an .npz with one array per
output name, or a CSV with the outputs' columns side by side.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import tf
from kerasrun.config.fields import is_number
from kerasrun.config.schema import Config
from kerasrun.data import Split, preprocess
from kerasrun.data.checks import is_text
from kerasrun.errors import ConfigError, Problem
from kerasrun.imports import suggest
from kerasrun.rundir.io import write_atomic, write_text_atomic
from kerasrun.use.evaluate import load_run

MAGIC = {".npz": b"PK\x03\x04", ".npy": b"\x93NUMPY"}  # how the files np.load reads begin (an .npz is a zip archive)

Features = np.ndarray | dict[str, np.ndarray]  # one array, or one per named input of the model


def input_names(model: Any) -> list[str]:
    """The names of the model's inputs, in its order (none for a subclassed model)."""
    return [tensor.name for tensor in getattr(model, "inputs", None) or []]


def takes_text(model: Any) -> dict[str, bool]:
    """Input name -> whether that input is a `dtype: string` one."""
    return {tensor.name: str(tensor.dtype) == "string" for tensor in getattr(model, "inputs", None) or []}


def model_feed(features: Features) -> Any:
    """What Keras's predict and a SavedModel take: text as string tensors (Keras refuses NumPy object arrays)."""
    if isinstance(features, dict):
        return {name: model_feed(array) for name, array in features.items()}
    return tf.constant(features) if is_text(features) else features


def as_outputs(predictions: Any, names: list[str]) -> list[np.ndarray]:
    """Predictions as a list in the model's output order, whatever structure Keras or a runtime gave them in."""
    if isinstance(predictions, dict):
        ordered = [predictions[n] for n in names] if names and set(names) <= set(predictions) else list(predictions.values())
        return [np.asarray(p) for p in ordered]
    if isinstance(predictions, (list, tuple)):
        return [np.asarray(p) for p in predictions]
    return [np.asarray(predictions)]


def file_problem(path: Path, message: str, hint: str | None = None, option: str = "--input") -> ConfigError:
    """A problem with the file of an option: --input, unless named (--output)."""
    return ConfigError(Problem(key=option, message=message, file=str(path), hint=hint))


def read_input(path: Path, names: list[str] | None = None) -> Features:
    """Features from .npy, .npz (the input's name, `x`, `x_test`, or its only array; one per name for several inputs) or .csv (numbers, optional header)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise file_problem(path, "no such file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise file_problem(path, "is not a regular file")
    if suffix not in (".npy", ".npz", ".csv"):
        raise file_problem(path, f"unsupported file type `{suffix}`", "use .npy, .npz or .csv")
    with path.open("rb") as f:
        start = f.read(6)
    if suffix in MAGIC and not start.startswith(MAGIC[suffix]):
        raise file_problem(path, f"it is not a NumPy {suffix} file")  # np.load would try to unpickle it
    if names and len(names) > 1 and suffix != ".npz":
        raise file_problem(
            path,
            f"this model has {len(names)} inputs ({', '.join(names)}); one {suffix} holds one array",
            "give an .npz with one array per input name",
        )
    try:
        if suffix == ".csv":
            return read_csv_input(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.keys())
            if names and len(names) > 1:
                return named_arrays(path, arrays, names)
            key = next((k for k in (*(names or [])[:1], "x", "x_test", "inputs") if k in arrays), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise file_problem(path, f"cannot tell which array holds the features: {keys}", "name it `x`")
            array = arrays[key]
            if not isinstance(array, np.ndarray):  # a member that isn't a .npy comes back as raw bytes
                raise file_problem(path, f"its member `{key}` is not a NumPy array")
            return array
    except ConfigError:
        raise
    except ValueError as exc:
        why = "it holds pickled Python objects; kerasrun reads plain numeric arrays only" if "allow_pickle" in str(exc) else str(exc)
        raise file_problem(path, f"cannot read it: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise file_problem(path, f"cannot read it: not a complete {suffix} file ({exc})") from None
    except MemoryError:
        raise file_problem(path, "it declares an array too large to load") from None


def named_arrays(path: Path, arrays: Any, names: list[str]) -> dict[str, np.ndarray]:
    """One array per input name from an open .npz; every name missing (with a did-you-mean) is refused at once."""
    keys = list(arrays.keys())
    missing = [name for name in names if name not in keys]
    if missing:
        raise ConfigError(
            [
                Problem(
                    key="--input",
                    message=f"has no array `{name}` for the model's input `{name}` (it holds {', '.join(keys) or 'none'})",
                    file=str(path),
                    hint=suggest(name, keys) or "name each array after its input",
                )
                for name in missing
            ]
        )
    features = {name: arrays[name] for name in names}
    for name, array in features.items():
        if not isinstance(array, np.ndarray):  # a member that isn't a .npy comes back as raw bytes
            raise file_problem(path, f"its member `{name}` is not a NumPy array")
    return features


def read_csv_input(path: Path) -> np.ndarray:
    """Numbers from a CSV file, one row per sample; a first row that isn't numbers is a header."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [(number, row) for number, row in enumerate(csv.reader(f), start=1) if row]
    except UnicodeDecodeError as exc:
        raise file_problem(path, f"not UTF-8 text (byte {exc.start})") from None
    if rows and not any(is_number(v) for v in rows[0][1]):  # a header has no numbers; a data row with a typo keeps its line
        rows = rows[1:]  # a header row
    widths = {len(row) for _, row in rows}
    if len(widths) > 1:
        number, row = next((n, r) for n, r in rows if len(r) != len(rows[0][1]))
        raise file_problem(path, f"line {number} has {len(row)} fields, line {rows[0][0]} has {len(rows[0][1])}")
    for number, row in rows:
        bad = next((v for v in row if not is_number(v)), None)
        if bad is not None:
            raise file_problem(path, f"line {number}: {bad!r} is not a number")
    return np.array([row for _, row in rows], dtype=np.float32).reshape(len(rows), -1)


def check_input(path: Path, x: Features, config: Config, text: dict[str, bool] | None = None) -> None:
    """The --input features as training data must be: arrays of samples, numbers (text for a string input), finite, at least one row."""
    if isinstance(x, dict):
        lengths = {name: len(array) if array.ndim else 0 for name, array in x.items()}
        if len(set(lengths.values())) > 1:
            raise file_problem(path, f"its arrays hold different numbers of samples: {lengths}")
        for name, array in x.items():
            check_array(path, array, config, (text or {}).get(name, False), f"`{name}` ")
        return
    check_array(path, x, config, any((text or {}).values()), "")


def check_array(path: Path, x: np.ndarray, config: Config, text: bool, which: str) -> None:
    """One input's array: samples, of the kind its model input takes, finite."""
    if x.ndim == 0 or len(x) == 0:
        raise file_problem(path, f"{which}holds no samples (an empty array)")
    if text:
        if x.dtype.kind not in "US":  # an object array can't come through np.load without pickle
            raise file_problem(path, f"{which}holds {x.dtype} values; the model's input takes text", "save NumPy str or bytes arrays")
        return
    if x.dtype.kind not in "biuf":
        raise file_problem(path, f"{which}holds {x.dtype} values; features must be numbers")
    if x.dtype.kind == "f" and not config.data.allow_nonfinite and not np.isfinite(x).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise file_problem(
            path, f"holds NaN or inf at index {where}", "the run was trained on finite numbers (data.allow_nonfinite: false)"
        )


def check_input_fits(path: Path, features: Features, model: Any) -> None:
    """The preprocessed features must fit the model's inputs, per sample."""
    inputs = getattr(model, "inputs", None) or []
    if not inputs:
        return  # a subclassed model declares no input shape
    for tensor in inputs:
        array = features[tensor.name] if isinstance(features, dict) else features
        which = f"`{tensor.name}` " if isinstance(features, dict) else ""
        expected = tuple(tensor.shape[1:])
        got = tuple(array.shape[1:])
        if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got, strict=False)):
            one = (
                array.ndim >= 1
                and len(expected) == array.ndim
                and all(e is None or e == d for e, d in zip(expected, array.shape, strict=False))
            )
            hint = f"it looks like one sample of shape {tuple(array.shape)}: save it as a batch of one, array[None] (shape {(1, *array.shape)})"
            raise file_problem(
                path,
                f"its {which}samples have shape {got} after the run's preprocessing, but the model takes {expected}",
                hint if one else None,
            )


def write_output(path: Path, predictions: np.ndarray | dict[str, np.ndarray]) -> None:
    """Predictions to .npy, .npz (key `predictions`, or one per output name) or .csv (one row per sample), written atomically."""
    suffix = path.suffix.lower()
    named = predictions if isinstance(predictions, dict) else {"output": predictions}
    if suffix == ".npy":
        assert not isinstance(predictions, dict)  # refused before predicting (check_output_fits)
        write_atomic(path, lambda f: np.save(f, predictions))
    elif suffix == ".npz":
        arrays: dict[str, Any] = dict(named) if isinstance(predictions, dict) else {"predictions": predictions}
        write_atomic(path, lambda f: np.savez(f, **arrays))
    else:
        flat = {name: array.reshape(len(array), -1) for name, array in named.items()}
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow([f"{name}_{i}" for name, array in flat.items() for i in range(array.shape[1])])
        writer.writerows(np.concatenate(list(flat.values()), axis=1).tolist())
        write_text_atomic(path, text.getvalue())


def check_output_fits(path: Path, names: list[str]) -> None:
    """One .npy holds one array: a model with several outputs writes .npz or .csv."""
    if len(names) > 1 and path.suffix.lower() == ".npy":
        raise file_problem(
            path,
            f"this model has {len(names)} outputs ({', '.join(names)}); one .npy holds one array",
            "use .npz (one array per output name) or .csv",
            option="--output",
        )


def predict_run(run_dir: Path, input_path: Path, output_path: Path, trust: bool = False) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """Apply the run's feature preprocessing to a file, predict, and write the predictions; their shape (one per output name)."""
    if output_path.suffix.lower() not in (".npy", ".npz", ".csv"):
        raise file_problem(output_path, f"unsupported file type `{output_path.suffix}`", "use .npy, .npz or .csv", option="--output")
    if output_path.resolve() == input_path.resolve():
        raise file_problem(output_path, "is the --input file; predictions would overwrite the features", option="--output")
    if output_path.is_dir():
        raise file_problem(output_path, "is a folder; give a file name in it, e.g. predictions.npy", option="--output")
    if not output_path.parent.is_dir():  # checked before the model loads: a long predict must not fail at its last step
        what = "is not a folder" if output_path.parent.exists() else "does not exist"
        raise file_problem(output_path, f"its folder {output_path.parent} {what}", "create the folder first", option="--output")
    config, model = load_run(run_dir, trust)
    outputs = list(getattr(model, "output_names", None) or [])
    check_output_fits(output_path, outputs)
    x = read_input(input_path, input_names(model))
    check_input(input_path, x, config, takes_text(model))
    features = preprocessed(x, config)
    check_input_fits(input_path, features, model)
    batch = config.evaluate.batch_size or config.train.batch_size
    predictions = as_outputs(model.predict(model_feed(features), batch_size=batch, verbose=0), outputs)
    if len(predictions) == 1:
        write_output(output_path, predictions[0])
        return tuple(predictions[0].shape)
    named = dict(zip(outputs, predictions, strict=True))
    write_output(output_path, named)
    return {name: tuple(array.shape) for name, array in named.items()}


def preprocessed(x: Features, config: Config) -> Features:
    """The run's feature steps (all but one_hot) applied as in training; several inputs have none (load_data refuses them)."""
    feature_steps = [s for s in config.data.preprocess if s.one_hot is None]
    if isinstance(x, dict) or not feature_steps:
        return x
    return np.asarray(
        preprocess(
            Split(x, np.zeros(len(x))),
            config.model_copy(update={"data": config.data.model_copy(update={"preprocess": feature_steps})}),
            "input",
        ).x
    )
