"""A split never leaves a class untrained: refused for arrays (validation_split, test data), rare classes shown, orders seeded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from helpers import train

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data

NOT_SYNTHETIC = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}
RNG = np.random.default_rng(1)
X = RNG.normal(size=(90, 2)).astype(np.float32)
SORTED = np.repeat(np.arange(3), 30)  # a file sorted by class, as many are


def npz(write_config: Any, tmp_path: Path, train_split: dict[str, Any], arrays: dict[str, Any]) -> Path:
    """TINY reading data.npz written from `arrays`, with these train keys."""
    np.savez(tmp_path / "data.npz", **arrays)
    return write_config({"data": {"source": "npz", "path": str(tmp_path / "data.npz"), **NOT_SYNTHETIC}, "train": train_split})


def test_a_validation_split_that_holds_few_classes_trains_with_a_note(runner, write_config, tmp_path, runs_dir) -> None:
    # The last 20 of 90 sorted rows are all class 2: val_accuracy would measure that class alone.
    config = npz(write_config, tmp_path, {"validation_split": 0.2, "stratify": False, "epochs": 1}, {"x_train": X, "y_train": SORTED})
    result = train(runner, config, runs_dir)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: the validation split")]
    assert notes == [
        "note: the validation split (18 samples) has no sample of classes 0, 1 (1 of the 3 trained classes): its numbers leave "
        "them out; Keras's validation_split takes the last rows, so data sorted by class validates on its last classes: "
        "set train.stratify: true"
    ], result.output
    data = runner.invoke(app, ["data", str(config), "--seconds", "0"])
    assert data.exit_code == 0 and "note: the validation split (18 samples) has no sample of classes 0, 1" in data.output
    stratified = train(runner, config, runs_dir / "stratified", "--set", "train.stratify=true")
    assert stratified.exit_code == 0 and "note: the validation split" not in stratified.output, stratified.output


def test_a_stratified_split_too_small_for_a_rare_class_is_noted_without_the_stratify_hint(runner, write_config, tmp_path, runs_dir) -> None:
    rare = np.array([0] * 29 + [1] * 29 + [2] * 2)  # 2 of 60 samples: a 0.2 stratified split holds none of class 2
    config = npz(write_config, tmp_path, {"validation_split": 0.2, "stratify": True}, {"x_train": X[:60], "y_train": rare})
    result = runner.invoke(app, ["data", str(config), "--seconds", "0"])
    assert result.exit_code == 0, result.output
    assert "note: the validation split (12 samples) has no sample of class 2 (2 of the 3 trained classes)" in result.output
    assert "stratified already, the split is too small for the rarest classes" in result.output
    assert "set train.stratify" not in result.output


def test_class_weight_labels_that_are_other_classes_names_are_noted(write_config) -> None:
    # Folders 0..10 sort as text: label 2 is the folder `10`, and the folder `2` is label 3.
    from kerasrun.data.weights import class_weight_notes

    config = load_config(write_config({"train": {"class_weight": {2: 3.0, 0: 1.0}}}))
    names = ["0", "1", "10", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert class_weight_notes(config, names) == [
        "train.class_weight's key 2 is label 2, the class named `10`; the class named `2` is label 3 "
        "(classes are numbered in sorted order; kerasrun data lists them)"
    ]
    assert class_weight_notes(config, ["0", "1", "2"]) == [] and class_weight_notes(config, None) == []


def test_a_last_fraction_split_that_drops_a_class_is_refused(runner, write_config, tmp_path, runs_dir) -> None:
    # Keras's rule: the last 31 of 90 rows are validation, one of class 1 and all 30 of class 2.
    config = npz(write_config, tmp_path, {"validation_split": 0.34, "stratify": False}, {"x_train": X, "y_train": SORTED})
    result = train(runner, config, runs_dir)
    assert result.exit_code == 2, result.output
    assert "train.validation_split: the training split has 0 samples of class 2: 30 validation samples" in result.output
    assert "set train.stratify: true" in result.output and "Traceback" not in result.output
    assert not list(runs_dir.iterdir())
    data = runner.invoke(app, ["data", str(config), "--json", "--seconds", "0"])
    assert data.exit_code == 2 and "0 samples of class 2" in data.output, data.output
    stratified = load_data(load_config(config, ["train.stratify=true"]))
    assert np.bincount(stratified.train.y).tolist() == [19, 20, 20] and np.bincount(stratified.validation.y).tolist() == [11, 10, 10]


def test_test_data_with_a_class_training_lacks_is_refused_at_its_key(runner, write_config, tmp_path, runs_dir) -> None:
    arrays = {"x_train": X[:60], "y_train": SORTED[:60], "x_test": X[60:], "y_test": SORTED[60:]}
    result = train(runner, npz(write_config, tmp_path, {"validation_split": None, "stratify": False}, arrays), runs_dir)
    assert result.exit_code == 2, result.output
    assert "data.y_test: the training split has 0 samples of class 2: 30 test samples" in result.output
    assert not list(runs_dir.iterdir())


def test_every_problem_at_once_and_class_names_shown(write_config, tmp_path) -> None:
    arrays = {
        "x_train": X,
        "y_train": np.where(SORTED == 2, 1, SORTED),
        "x_val": X[:5],
        "y_val": [2, 2, 0, 1, 2],
        "x_test": X[:3],
        "y_test": [2, 0, 1],
    }
    config = npz(write_config, tmp_path, {"validation_split": None, "stratify": False}, arrays)
    from kerasrun.errors import ConfigError

    try:
        load_data(load_config(config))
    except ConfigError as exc:
        messages = [str(problem) for problem in exc.problems]
    else:
        raise AssertionError("a validation and a test class with no training sample was accepted")
    assert len(messages) == 2
    assert "data.y_val" in messages[0] and "class 2: 3 validation samples" in messages[0]
    assert "data.y_test" in messages[1] and "class 2: 1 test sample:" in messages[1]


def test_a_rare_class_is_shown_not_refused(runner, write_config, tmp_path) -> None:
    y = np.concatenate([[2, 2, 2], np.zeros(43, np.int64), np.ones(44, np.int64)])  # class 2: three rows, all at the front
    config = npz(write_config, tmp_path, {"validation_split": 0.2, "stratify": False}, {"x_train": X, "y_train": y})
    result = runner.invoke(app, ["data", str(config), "--json", "--seconds", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["train"]["classes"] == {"0": 43, "1": 26, "2": 3} and report["validation"]["classes"] == {"1": 18}
    table = runner.invoke(app, ["data", str(config), "--seconds", "0"])
    assert table.exit_code == 0 and "samples per class" in table.output, table.output


def test_regression_targets_are_not_classes(write_config, tmp_path) -> None:
    # Integer-valued targets under a regression loss: a value seen only in validation is no dropped class.
    config = npz(
        write_config, tmp_path, {"validation_split": 0.34, "stratify": False}, {"x_train": X, "y_train": SORTED.astype(np.float32)}
    )
    data = load_data(load_config(config, ["compile.loss=mse", "compile.metrics=[]"]))
    assert set(data.validation.y.tolist()) == {1.0, 2.0} and 2.0 not in data.train.y


def test_blobs_and_sklearn_come_in_a_seeded_mixed_order(write_config) -> None:
    changes = {"data": {"test_fraction": None}, "train": {"validation_split": 0.2, "stratify": False}}
    first, again = (load_data(load_config(write_config(changes))) for _ in range(2))
    assert np.bincount(first.validation.y, minlength=3).min() > 0  # generated class by class, split mixed
    np.testing.assert_array_equal(first.train.x, again.train.x)
    iris = {"data": {"source": "sklearn", "name": "iris", **NOT_SYNTHETIC}, "train": {"validation_split": 0.3, "stratify": False}}
    data = load_data(load_config(write_config(iris)))
    assert np.bincount(data.validation.y, minlength=3).min() > 0  # iris comes sorted by class
