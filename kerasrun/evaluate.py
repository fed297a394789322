"""Score and use a finished run: `evaluate` on its test/validation data, `predict` on a file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun import layers  # noqa: F401  (registers kerasrun's own layers for loading)
from kerasrun._tf import keras
from kerasrun.config import Config
from kerasrun.data import Split, load_data, make_dataset, name_lists, preprocess
from kerasrun.errors import ConfigError, Problem, RunFailedError
from kerasrun.models import build_training_state, input_names, output_names
from kerasrun.registry import config_objects
from kerasrun.runs import open_run, require_completed
from kerasrun.trainers.base import evaluate_model


def load_run(run_dir: Path, trust: bool = False) -> tuple[Config, Any]:
    """A completed, trusted run's config and its saved model (Keras safe_mode; custom objects from the config's imports).

    Nothing the folder names is imported before its signature is checked: a run folder handed over by
    someone else can name any `module:name`.
    """
    run_dir = Path(run_dir)
    run = open_run(run_dir, trust)
    require_completed(run)
    config = run.config()
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise ConfigError(Problem(key="", message="the run kept no model.keras (output.save_model was false)", file=str(run_dir)))
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, custom_objects=config_objects(config))
    except (TypeError, ValueError) as exc:
        raise RunFailedError(f"cannot load {model_path}: {str(exc).strip().splitlines()[0]}") from None
    return config, model


def evaluate_run(run_dir: Path, split: str = "test", trust: bool = False) -> dict[str, float]:
    """Evaluate the run's model on its test split or on its validation data."""
    config, model = load_run(run_dir, trust)
    data = name_lists(load_data(config), input_names(model), output_names(model))
    chosen = data.test if split == "test" else data.validation
    if chosen is None:
        raise ConfigError(Problem(key="", message=f"the run's data has no {split} split", file=str(run_dir / "config.yaml")))
    batch = config.evaluate.batch_size or config.train.batch_size
    dataset = make_dataset(chosen, batch, False, config.seed)
    build_training_state(model, dataset)
    return evaluate_model(model, dataset, config.evaluate.steps)


def read_input(path: Path) -> np.ndarray:
    """Features from .npy, .npz (key `x`, `x_test`, or its only array) or .csv (numbers, optional header)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ConfigError(Problem(key="--input", message="no such file", file=str(path)))
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.keys())
            key = next((k for k in ("x", "x_test", "inputs") if k in arrays), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ConfigError(
                    Problem(
                        key="--input", message=f"cannot tell which array holds the features: {keys}", file=str(path), hint="name it `x`"
                    )
                )
            return arrays[key]
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = [row for row in csv.reader(f) if row]
        try:
            float(rows[0][0])
        except (ValueError, IndexError):
            rows = rows[1:]  # a header row
        return np.array(rows, dtype=np.float32)
    raise ConfigError(Problem(key="--input", message=f"unsupported file type `{suffix}`", file=str(path), hint="use .npy, .npz or .csv"))


def write_output(path: Path, predictions: np.ndarray) -> None:
    """Predictions to .npy, .npz (key `predictions`) or .csv (one row per sample)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, predictions)
    elif suffix == ".npz":
        np.savez(path, predictions=predictions)
    elif suffix == ".csv":
        flat = predictions.reshape(len(predictions), -1)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([f"output_{i}" for i in range(flat.shape[1])])
            writer.writerows(flat.tolist())
    else:
        raise ConfigError(
            Problem(key="--output", message=f"unsupported file type `{suffix}`", file=str(path), hint="use .npy, .npz or .csv")
        )


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
    config, model = load_run(run_dir, trust)
    x = read_input(input_path)
    feature_steps = [s for s in config.data.preprocess if s.one_hot is None]
    features = preprocess(
        Split(x, np.zeros(len(x))),
        config.model_copy(update={"data": config.data.model_copy(update={"preprocess": feature_steps})}),
        "input",
    ).x
    batch = config.evaluate.batch_size or config.train.batch_size
    predictions = np.asarray(model.predict(features, batch_size=batch, verbose=0))
    write_output(output_path, predictions)
    return tuple(predictions.shape)
