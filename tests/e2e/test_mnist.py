"""The seed configs trained on the real MNIST (slow; skipped only when ../shared/data/mnist.npz is absent)."""

from __future__ import annotations

import pytest
from helpers import config_path, needs_mnist, only_run, train

from kerasrun.rundir.io import read_json

pytestmark = pytest.mark.slow


def train_json(runner, name: str, runs_dir, *args: str) -> dict:
    """Train configs/<name>.yaml into runs_dir; return the run folder's JSON files."""
    result = train(runner, config_path(name), runs_dir, *args)
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    metrics = read_json(run / "metrics.json") if (run / "metrics.json").exists() else None
    return {"history": read_json(run / "history.json"), "metrics": metrics, "run": read_json(run / "run.json"), "dir": run}


@needs_mnist
def test_mnist_mlp_reaches_96_percent_and_reruns_identically(runner, mnist_env, tmp_path) -> None:
    first = train_json(runner, "mnist_mlp", tmp_path / "a")
    assert first["metrics"]["sparse_categorical_accuracy"] >= 0.96
    assert first["history"]["epoch"] == [1, 2, 3]
    assert first["run"]["status"] == "completed"
    predictions = read_json(first["dir"] / "predictions.json")
    assert len(predictions["predictions"]) == 3 and predictions["targets"] == [7, 2, 1]
    second = train_json(runner, "mnist_mlp", tmp_path / "b")
    assert second["history"] == first["history"]
    assert second["metrics"] == first["metrics"]


@needs_mnist
def test_mnist_cnn_matches_the_published_curve(runner, mnist_env, tmp_path) -> None:
    result = train_json(runner, "mnist_cnn", tmp_path)
    published = [0.9347, 0.9589, 0.9619]
    measured = result["history"]["val_accuracy"]
    assert abs(measured[-1] - published[-1]) <= 0.015, measured
    assert measured[0] >= 0.90 and measured[-1] >= 0.95


@needs_mnist
def test_mnist_class_weight_and_sample_weight_agree(runner, mnist_env, tmp_path) -> None:
    by_class_weight = train_json(runner, "mnist_class_weight", tmp_path / "cw")
    by_sample_weight = train_json(
        runner,
        "mnist_class_weight",
        tmp_path / "sw",
        "--set",
        "train.class_weight=null",
        "--set",
        "train.sample_weight={by_class: {5: 2.0}}",
    )
    assert by_class_weight["history"] == by_sample_weight["history"]
    assert by_class_weight["metrics"]["sparse_categorical_accuracy"] >= 0.93


def test_linear_classifier_separates_the_blobs(runner, tmp_path) -> None:
    result = train_json(runner, "linear_classifier", tmp_path)
    assert result["history"]["epoch"][-1] == 40
    assert result["history"]["binary_accuracy"][-1] >= 0.97
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]
    assert result["metrics"] is None  # the seed trains on all 2,000 points: no test split, no metrics.json


@needs_mnist
def test_mnist_custom_loop_matches_the_published_training_curve(runner, mnist_env, tmp_path) -> None:
    result = train_json(runner, "mnist_custom_loop", tmp_path)
    published_accuracy = [0.9140, 0.9528, 0.9614]
    measured = result["history"]["sparse_categorical_accuracy"]
    assert all(abs(m - p) <= 0.005 for m, p in zip(measured, published_accuracy, strict=True)), measured
    assert result["metrics"]["sparse_categorical_accuracy"] >= 0.97


@needs_mnist
def test_mnist_cnn_custom_loop_matches_the_published_test_curve(runner, mnist_env, tmp_path) -> None:
    result = train_json(runner, "mnist_cnn_custom_loop", tmp_path)
    published = [0.9483, 0.9669, 0.9716]
    measured = result["history"]["val_accuracy"]  # validated on the test set after each epoch
    assert all(abs(m - p) <= 0.01 for m, p in zip(measured, published, strict=True)), measured
    assert abs(measured[-1] - published[-1]) <= 0.005, measured
