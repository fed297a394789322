"""A source's own per-sample weights weigh training only, as class weights do: validation and test numbers stay unweighted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import config_path, merge, only_run, train
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data

BASE: dict[str, Any] = {
    "name": "weights",
    "seed": 3,
    "data": {"source": "csv", "path": "iris.csv", "target": "species", "test_fraction": 0.2},
    "model": {
        "inputs": {"x": [4]},
        "layers": [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}],
    },
    "compile": {"optimizer": {"Adam": {"learning_rate": 0.02}}, "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": 2, "batch_size": 16, "validation_split": 0.25, "stratify": True},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris.csv (shuffled rows, text labels) with a weight column `w`: 0 for virginica, 1 for the others."""
    root = tmp_path_factory.mktemp("weights")
    iris = load_iris()
    order = np.random.default_rng(1).permutation(len(iris.target))
    lines = ["a,b,c,d,species,w"]
    for row, label in zip(iris.data[order], iris.target[order], strict=True):
        lines.append(",".join(f"{v:.1f}" for v in row) + f",{iris.target_names[label]},{0.0 if label == 2 else 1.0}")
    (root / "iris.csv").write_text("\n".join(lines) + "\n")
    return root


def run_files(runner: CliRunner, folder: Path, name: str, changes: dict[str, Any]) -> tuple[bytes, bytes]:
    """Train BASE with `changes` in its own runs folder: history.json and metrics.json."""
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(merge(BASE, changes), sort_keys=False))
    result = train(runner, config, folder / name)
    assert result.exit_code == 0, result.output
    run = only_run(folder / name)
    return (run / "history.json").read_bytes(), (run / "metrics.json").read_bytes()


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_a_weight_column_weighs_training_exactly_as_the_same_class_weights(folder: Path, runner: CliRunner, stream: bool) -> None:
    # Class 2 (virginica) weighs 0 both ways, so training is the same; validation and test are unweighted both ways.
    column = run_files(runner, folder, f"column-{stream}", {"data": {"sample_weight": "w", "stream": stream}})
    classes = run_files(
        runner,
        folder,
        f"classes-{stream}",
        {"data": {"features": ["a", "b", "c", "d"], "stream": stream}, "train": {"class_weight": {2: 0.0}}},
    )
    assert column == classes


def test_validation_and_test_splits_carry_no_source_weights(folder: Path) -> None:
    config = folder / "load.yaml"
    config.write_text(yaml.safe_dump(merge(BASE, {"data": {"sample_weight": "w"}}), sort_keys=False))
    data = load_data(load_config(config))
    assert data.train.sample_weight is not None and set(np.unique(data.train.sample_weight)) == {0.0, 1.0}
    assert data.validation.sample_weight is None and data.test.sample_weight is None


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("train.class_weight=balanced", "train.class_weight"),
        ("train.class_weight={25: 2.0}", "train.class_weight"),  # a target value of diabetes, taken for a class before
        ("train.sample_weight={by_class: {25: 5.0}}", "train.sample_weight.by_class"),
    ],
)
def test_class_weights_on_regression_targets_are_refused(runner: CliRunner, tmp_path: Path, setting: str, where: str) -> None:
    result = runner.invoke(app, ["train", str(config_path("diabetes_normalization")), "--set", setting, "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"{where}: class weights need class targets, but compile.loss mean_absolute_error is a regression loss" in result.output
    assert not list(tmp_path.iterdir())


def test_class_weights_of_a_regression_output_are_refused_by_output(runner: CliRunner, tmp_path: Path) -> None:
    config = str(config_path("multi_io"))
    weights = "train.class_weight={score_output: {1: 2.0}, class_output: {1: 2.0}}"
    result = runner.invoke(app, ["train", config, "--set", weights, "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "1 problem found" in result.output, result.output
    assert (
        "train.class_weight.score_output: class weights need class targets, but compile.loss.score_output mean_squared_error"
        in result.output
    )


def test_a_classifier_trained_with_mse_keeps_its_class_weights(folder: Path, runner: CliRunner) -> None:
    # A Brier-score classifier: mse on one-hot rows (or 0/1 labels) is a classification, and class weights apply.
    changes = {"data": {"features": ["a", "b", "c", "d"], "preprocess": [{"one_hot": 3}]}, "compile": {"loss": "mse"}}
    run_files(runner, folder, "brier", {**changes, "train": {"class_weight": {2: 2.0}}})


def test_class_weights_by_class_name_are_the_weights_by_label(folder: Path, runner: CliRunner) -> None:
    # The classes are the sorted text labels: setosa=0, versicolor=1, virginica=2.
    named = run_files(runner, folder, "named", {"data": {"features": ["a", "b", "c", "d"]}, "train": {"class_weight": {"virginica": 2.0}}})
    numbered = run_files(runner, folder, "numbered", {"data": {"features": ["a", "b", "c", "d"]}, "train": {"class_weight": {2: 2.0}}})
    assert named == numbered
    config = folder / "typo.yaml"
    config.write_text(yaml.safe_dump(merge(BASE, {"train": {"class_weight": {"virginca": 2.0, "setosa": 0.5}}}), sort_keys=False))
    result = train(runner, config, folder / "typo")
    assert result.exit_code == 2 and "1 problem found" in result.output, result.output
    assert "train.class_weight.virginca: no class is named `virginca`" in result.output and "did you mean `virginica`?" in result.output
    unnamed = runner.invoke(app, ["train", str(config_path("digits_mlp")), "--set", "train.class_weight={cat: 2.0}"])
    assert unnamed.exit_code == 2 and "class names as class_weight keys need a source that names its classes" in unnamed.output
