"""Validation data given by the source (npz keys, a python dict, CSV and image files): used exactly as Keras's validation_data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import TINY, merge, only_run, train
from typer.testing import CliRunner

from kerasrun._tf import keras
from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data
from kerasrun.errors import ConfigError
from kerasrun.rundir.io import read_json

NO_SPLIT = {"validation_split": None, "stratify": False, "shuffle": False, "epochs": 3}


def write(folder: Path, changes: dict[str, Any], name: str = "config.yaml") -> Path:
    """TINY with `changes` (a `data` section replaces TINY's whole), written into `folder`."""
    path = folder / name
    config = merge(TINY, {key: value for key, value in changes.items() if key != "data"})
    config["data"] = changes.get("data", TINY["data"])
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def npz_with_validation(folder: Path) -> tuple[np.ndarray, ...]:
    """d.npz with x_train/y_train, x_val/y_val and x_test/y_test of three Gaussian blobs; the arrays."""
    rng = np.random.default_rng(3)
    y = np.arange(300) % 3
    x = (rng.normal(size=(300, 2)) + np.array([[0, 0], [4, 0], [0, 4]])[y]).astype(np.float32)
    arrays = (x[:200], y[:200], x[200:260], y[200:260], x[260:], y[260:])
    np.savez(folder / "d.npz", **dict(zip(["x_train", "y_train", "x_val", "y_val", "x_test", "y_test"], arrays, strict=True)))
    return arrays


def test_npz_validation_keys_equal_keras_validation_data(tmp_path: Path, runner: CliRunner) -> None:
    x, y, x_val, y_val, _, _ = npz_with_validation(tmp_path)
    config = write(tmp_path, {"data": {"source": "npz", "path": "d.npz"}, "train": NO_SPLIT, "compile": {"steps_per_execution": 1}})
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    ours = read_json(only_run(tmp_path / "runs") / "history.json")
    keras.utils.set_random_seed(TINY["seed"])
    model = keras.Sequential(
        [keras.Input((2,), name="x"), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    theirs = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, validation_data=(x_val, y_val), verbose=0).history
    assert {k: ours[k] for k in theirs} == {k: [float(v) for v in values] for k, values in theirs.items()}


def test_validation_from_the_source_and_a_split_conflict(tmp_path: Path) -> None:
    npz_with_validation(tmp_path)
    with pytest.raises(ConfigError, match="the data source already provides validation data"):
        load_data(load_config(write(tmp_path, {"data": {"source": "npz", "path": "d.npz"}})))


def test_python_dict_with_validation_arrays_and_a_misspelled_key(tmp_path: Path) -> None:
    source = {"source": "python", "function": "helpers_custom:with_validation_arrays"}
    data = load_data(load_config(write(tmp_path, {"data": source, "train": NO_SPLIT})))
    assert len(data.train) == 60 and len(data.validation) == 40
    source["function"] = "helpers_custom:with_misspelled_key"
    with pytest.raises(ConfigError, match=r"keys kerasrun doesn't read: 'x_vall' \(did you mean `x_val`"):
        load_data(load_config(write(tmp_path, {"data": source, "train": NO_SPLIT})))


def write_labelled_csv(path: Path, labels: list[str], seed: int) -> None:
    """Two features and a text label per row."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,kind"] + [f"{rng.normal():.4f},{rng.normal():.4f},{label}" for label in labels]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_csv_validation_and_test_files_number_labels_by_the_training_file(tmp_path: Path, stream: bool) -> None:
    write_labelled_csv(tmp_path / "train.csv", ["ant", "bee", "cat"] * 20, 0)
    write_labelled_csv(tmp_path / "val.csv", ["cat", "cat", "bee"], 1)  # no `ant`: `cat` is still class 2
    write_labelled_csv(tmp_path / "test.csv", ["cat", "ant"], 2)
    csv = {"source": "csv", "path": "train.csv", "target": "kind", "validation_path": "val.csv", "test_path": "test.csv", "stream": stream}
    data = load_data(load_config(write(tmp_path, {"data": csv, "train": NO_SPLIT})))
    assert data.class_names == ["ant", "bee", "cat"]
    assert data.validation.y.tolist() == [2, 2, 1] and data.test.y.tolist() == [2, 0]
    write_labelled_csv(tmp_path / "val.csv", ["cat", "dog"], 1)
    with pytest.raises(ConfigError, match=r"val.csv has labels the training file has not: \['dog'\]"):
        load_data(load_config(write(tmp_path, {"data": csv, "train": NO_SPLIT})))


def test_preprocessing_applies_to_source_validation(tmp_path: Path) -> None:
    _, _, x_val, _, _, _ = npz_with_validation(tmp_path)
    changes = {"data": {"source": "npz", "path": "d.npz", "preprocess": [{"scale": 4.0}]}, "train": NO_SPLIT}
    data = load_data(load_config(write(tmp_path, changes)))
    np.testing.assert_array_equal(data.validation.x, x_val / np.float32(4.0))


def test_a_run_folder_reads_an_npz_without_validation_arrays(tmp_path: Path, runner: CliRunner) -> None:
    # The run's config.yaml spells out x_val: x_val (the default); a file without it is still fine.
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.normal(size=(60, 2)),
        y_train=np.arange(60) % 3,
        x_test=rng.normal(size=(9, 2)),
        y_test=np.arange(9) % 3,
    )
    result = train(runner, write(tmp_path, {"data": {"source": "npz", "path": "d.npz"}, "train": NO_SPLIT}), tmp_path / "runs")
    assert result.exit_code == 0, result.output
    evaluated = runner.invoke(app, ["evaluate", str(only_run(tmp_path / "runs"))])
    assert evaluated.exit_code == 0, evaluated.output
    config = write(
        tmp_path, {"data": {"source": "npz", "path": "d.npz", "x_val": "x_valid", "y_val": "y_valid"}, "train": NO_SPLIT}, "named.yaml"
    )
    with pytest.raises(ConfigError, match=r"d\.npz has no array `x_valid`"):
        load_data(load_config(config))


def test_half_a_validation_pair_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "half.npz", x_train=rng.normal(size=(30, 2)), y_train=np.arange(30) % 3, x_val=rng.normal(size=(6, 2)))
    with pytest.raises(ConfigError, match=r"data\.x_val: half\.npz has x_val without its pair"):
        load_data(load_config(write(tmp_path, {"data": {"source": "npz", "path": "half.npz"}, "train": NO_SPLIT})))
    source = {"source": "python", "function": "helpers_custom:with_half_validation"}
    with pytest.raises(ConfigError, match="only one of x_val and y_val"):
        load_data(load_config(write(tmp_path, {"data": source, "train": NO_SPLIT}, "py.yaml")))


def test_validation_data_test_on_an_npz_with_validation_arrays_is_refused_before_training(tmp_path: Path, runner: CliRunner) -> None:
    npz_with_validation(tmp_path)
    (tmp_path / "runs").mkdir()
    train_spec = {**NO_SPLIT, "validation_data": "test"}
    config = write(tmp_path, {"data": {"source": "npz", "path": "d.npz"}, "train": train_spec})
    assert runner.invoke(app, ["validate", str(config)]).exit_code == 0  # only the file tells whether it holds x_val
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "train.validation_data: `test` validates on the test split, but the data source also gives" in result.output
    assert "the arrays x_val, y_val of d.npz" in result.output and "set data.x_val: null and data.y_val: null" in result.output
    assert "Traceback" not in result.output and not any((tmp_path / "runs").iterdir())
    # Giving up the file's own validation arrays, as the message says, trains on the test split.
    fixed = write(tmp_path, {"data": {"source": "npz", "path": "d.npz", "x_val": None, "y_val": None}, "train": train_spec})
    assert train(runner, fixed, tmp_path / "runs").exit_code == 0


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_validation_data_test_with_a_validation_file_is_refused_by_validate(tmp_path: Path, runner: CliRunner, stream: bool) -> None:
    write_labelled_csv(tmp_path / "train.csv", ["ant", "bee", "cat"] * 20, 0)
    write_labelled_csv(tmp_path / "val.csv", ["ant", "bee", "cat"], 1)
    (tmp_path / "runs").mkdir()
    csv = {"source": "csv", "path": "train.csv", "target": "kind", "validation_path": "val.csv", "test_path": "val.csv", "stream": stream}
    config = write(tmp_path, {"data": csv, "train": {**NO_SPLIT, "validation_data": "test"}})
    for command in (["validate", str(config)], ["train", str(config), "--runs-dir", str(tmp_path / "runs")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "train.validation_data: " in result.output and "also gives validation data (data.validation_path)" in result.output
        assert "remove one: drop train.validation_data" in result.output and "or remove data.validation_path" in result.output
    assert not any((tmp_path / "runs").iterdir())
