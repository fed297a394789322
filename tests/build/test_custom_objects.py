"""Custom losses, metrics and layers by import path; activation metrics; saving and reloading them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import config_path, only_run, train

from kerasrun._tf import keras
from kerasrun.cli import app
from kerasrun.examples.custom_objects import WeightedBinaryCrossEntropy
from kerasrun.rundir.io import read_json


def test_custom_objects_train_in_both_loops_and_reload(runner, tmp_path) -> None:
    histories = {}
    for loop in ("fit", "custom"):
        result = train(
            runner, config_path("digits_custom_objects"), tmp_path / loop, "--set", f"train.loop={loop}", "--set", "train.epochs=3"
        )
        assert result.exit_code == 0, result.output
        histories[loop] = read_json(only_run(tmp_path / loop) / "history.json")
    assert histories["custom"] == histories["fit"]
    history = histories["fit"]
    assert {"categorical_true_positives", "dense_1_std", "val_dense_1_std", "val_categorical_true_positives"} <= set(history)
    # The true-positive count is a count over the epoch's samples, consistent with the accuracy.
    assert history["categorical_true_positives"][-1] == pytest.approx(history["categorical_accuracy"][-1] * 1221, abs=1.5)
    run = only_run(tmp_path / "fit")
    evaluated = runner.invoke(app, ["evaluate", str(run), "--json"])  # loads model.keras in safe mode
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output) == read_json(run / "metrics.json")


def test_loss_subclass_with_arguments(runner, tmp_path) -> None:
    result = train(runner, config_path("breast_cancer_weighted_bce"), tmp_path, "--set", "train.epochs=10")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    assert read_json(run / "metrics.json")["binary_accuracy"] > 0.85
    evaluated = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert json.loads(evaluated.output) == read_json(run / "metrics.json")


def test_weighted_binary_cross_entropy_by_hand() -> None:
    loss = WeightedBinaryCrossEntropy(pos_weight=0.5, weight=2.0, from_logits=True)
    y_true = np.array([[1.0], [0.0]], dtype="float32")
    logits = np.array([[0.3], [-1.2]], dtype="float32")
    p = 1 / (1 + np.exp(-logits[:, 0]))
    ce = -(y_true[:, 0] * np.log(p) + (1 - y_true[:, 0]) * np.log(1 - p))
    expected = np.mean(2.0 * np.where(y_true[:, 0] == 1, 0.5 * ce, ce))
    assert float(loss(y_true, logits)) == pytest.approx(expected, rel=1e-5)
    assert WeightedBinaryCrossEntropy.from_config(loss.get_config()).pos_weight == 0.5


def test_bad_custom_object_arguments_exit_2(runner, tmp_path) -> None:
    result = train(
        runner,
        config_path("breast_cancer_weighted_bce"),
        tmp_path,
        "--set",
        "compile.loss={kerasrun.examples.custom_objects:WeightedBinaryCrossEntropy: {pos_wieght: 0.5}}",
    )
    assert result.exit_code == 2 and "compile.loss" in result.output and "pos_wieght" in result.output
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_activation_metric_needs_a_real_layer(runner, tmp_path) -> None:
    result = train(
        runner, config_path("digits_custom_objects"), tmp_path, "--set", "model.activation_metrics=[{layer: dense1, statistic: std}]"
    )
    assert result.exit_code == 2 and "model.activation_metrics[0].layer" in result.output and "did you mean `dense_1`" in result.output


def test_activation_statistic_values(tmp_path) -> None:
    from kerasrun.build.layers import ActivationStatistic

    layer = ActivationStatistic("zero_fraction", "zeros")
    layer(keras.ops.convert_to_tensor(np.array([[0.0, 1.0], [0.0, 0.0]], dtype="float32")))
    assert float(layer.tracker.result()) == 0.75
    layer = ActivationStatistic("std", "spread")
    layer(keras.ops.convert_to_tensor(np.array([[1.0, 3.0]], dtype="float32")))
    assert float(layer.tracker.result()) == 1.0


def test_subclassed_model_and_custom_layer_from_a_factory(runner, tmp_path) -> None:
    histories = {}
    for loop in ("fit", "custom"):
        result = train(
            runner, config_path("digits_subclassed_model"), tmp_path / loop, "--set", f"train.loop={loop}", "--set", "train.epochs=3"
        )
        assert result.exit_code == 0, result.output
        histories[loop] = read_json(only_run(tmp_path / loop) / "history.json")
    assert histories["custom"] == histories["fit"]
    run = only_run(tmp_path / "fit")
    assert "my_sequential" in (run / "summary.txt").read_text()
    evaluated = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output) == read_json(run / "metrics.json")
