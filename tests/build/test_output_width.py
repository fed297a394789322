"""A classification output's width against the labels: too narrow for sparse labels is refused, wider than needed is a note."""

from __future__ import annotations

import re
from typing import Any

from helpers import only_run, train

from kerasrun.cli import app


def dense_head(units: int) -> dict:
    """TINY's model with `units` softmax outputs, the output layer named."""
    return {
        "model": {
            "inputs": {"x": [2]},
            "layers": [
                {"Dense": {"units": 8, "activation": "relu"}},
                {"Dense": {"units": units, "activation": "softmax", "name": "probs"}},
            ],
        }
    }


def test_an_output_too_narrow_for_the_labels_is_refused(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config(dense_head(2)), runs_dir)  # TINY's labels are 0, 1 and 2
    assert result.exit_code == 2, result.output
    # One problem for all three splits, not one each.
    assert "1 problem found" in result.output, result.output
    assert (
        "compile.loss: train, validation and test targets for output `probs` go up to label 2, but the output has 2 units" in result.output
    )
    assert "(give it at least 3 units)" in result.output and not list(runs_dir.iterdir())


def test_an_output_wider_than_the_labels_trains_with_a_one_line_note(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config(dense_head(64)), runs_dir)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "has 64 units" in line]
    assert len(notes) == 1 and re.fullmatch(
        r"note: output `probs` has 64 units but the labels need 3 \(0\.\.2\): the other 61 are never a target "
        r"\(compile\.loss sparse_categorical_crossentropy\)",
        notes[0],
    ), result.output
    assert only_run(runs_dir).is_dir()
    exact = train(runner, write_config(dense_head(3), name="exact.yaml"), runs_dir / "exact")
    assert exact.exit_code == 0 and "units but the labels need" not in exact.output, exact.output


def test_a_metric_for_the_other_form_of_targets_is_refused_at_its_key(runner, write_config, runs_dir) -> None:
    # Keras computes these without a word: categorical_accuracy on integer labels reports a number that is not the accuracy.
    metrics = [
        "accuracy",
        "categorical_accuracy",
        {"TopKCategoricalAccuracy": {"k": 2}},
        "binary_accuracy",
        "sparse_top_k_categorical_accuracy",
    ]
    result = train(runner, write_config({**dense_head(3), "compile": {"metrics": metrics}}), runs_dir)
    assert result.exit_code == 2 and "3 problems found" in result.output, result.output
    for index, label in [(1, "categorical_accuracy"), (2, "top_k_categorical_accuracy")]:
        assert (
            f"compile.metrics[{index}]: train, validation and test targets for output `probs` are 1 wide, but the output has 3 units: "
            f"{label} wants one-hot rows as wide as the output (integer labels: use sparse_{label}, or `accuracy`)"
        ) in result.output
    assert (
        "compile.metrics[3]: train, validation and test targets for output `probs` range over 0..2, but binary_accuracy wants values in [0, 1]"
        in result.output
    )
    one_hot: dict[str, Any] = {
        "data": {"preprocess": [{"one_hot": 3}]},
        "compile": {"loss": "categorical_crossentropy", "metrics": ["sparse_categorical_accuracy"]},
    }
    result = train(runner, write_config({**dense_head(3), **one_hot}), runs_dir)
    assert result.exit_code == 2, result.output
    assert (
        "compile.metrics[0]: train, validation and test targets for output `probs` are one-hot rows of width 3, "
        "but sparse_categorical_accuracy wants integer labels (use categorical_accuracy, or `accuracy`)"
    ) in result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())
    one_hot["compile"]["metrics"] = ["categorical_accuracy", {"TopKCategoricalAccuracy": {"k": 2}}]  # the right form trains
    assert train(runner, write_config({**dense_head(3), **one_hot, "train": {"epochs": 1}}), runs_dir).exit_code == 0


def test_an_elementwise_loss_or_metric_on_labels_of_another_width_is_refused(runner, write_config, runs_dir) -> None:
    # mse on integer labels against 3 outputs: Keras fails with "Incompatible shapes: [16] vs. [16,3]" in the first step.
    result = train(runner, write_config({**dense_head(3), "compile": {"loss": "mse", "metrics": []}}), runs_dir)
    assert result.exit_code == 2, result.output
    assert (
        "compile.loss: train, validation and test targets for output `probs` are 1 wide, but the output has 3 units: "
        "mse compares targets and outputs element by element (class labels: use sparse_categorical_crossentropy)"
    ) in result.output
    # The same for a metric given by its class name, refused at its key.
    result = train(runner, write_config({**dense_head(3), "compile": {"metrics": [{"MeanAbsoluteError": {}}]}}), runs_dir)
    assert result.exit_code == 2 and "compile.metrics[0]: " in result.output and "mean_absolute_error compares" in result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())


def test_a_confusion_metric_wants_a_0_1_target_per_output_unit(runner, write_config, runs_dir) -> None:
    # AUC/Precision on integer labels against 3 softmax units: Keras failed with "Argument `segment_ids` and `data` should
    # have same leading dimension"; a label 2 against one sigmoid unit was counted without a word.
    metrics = ["accuracy", "AUC", {"Precision": {"thresholds": 0.5}}, "f1_score"]
    result = train(runner, write_config({**dense_head(3), "compile": {"metrics": metrics}}), runs_dir)
    assert result.exit_code == 2 and "3 problems found" in result.output, result.output
    for index, label in [(1, "AUC"), (2, "Precision"), (3, "F1Score")]:
        assert (
            f"compile.metrics[{index}]: train, validation and test targets for output `probs` are 1 wide, but the output has 3 units: "
            f"{label} wants a 0/1 target for every output unit (class labels: add `one_hot: 3` under data.preprocess, or use `accuracy`)"
        ) in result.output
    sigmoid = {
        "model": {"inputs": {"x": [2]}, "layers": [{"Dense": {"units": 1, "activation": "sigmoid", "name": "p"}}]},
        "compile": {"loss": "mse", "metrics": ["Recall"]},
    }
    result = train(runner, write_config(sigmoid, name="sigmoid.yaml"), runs_dir)
    assert result.exit_code == 2, result.output
    assert (
        "compile.metrics[0]: train, validation and test targets for output `p` range over 0..2, but Recall wants 0/1 targets"
        in result.output
    )
    assert not runs_dir.exists() or not list(runs_dir.iterdir())
    one_hot = {"data": {"preprocess": [{"one_hot": 3}]}, "compile": {"loss": "categorical_crossentropy", "metrics": ["AUC", "Precision"]}}
    assert train(runner, write_config({**dense_head(3), **one_hot, "train": {"epochs": 1}}), runs_dir).exit_code == 0


def test_a_loss_by_output_name_on_a_single_output_model(runner, write_config, runs_dir) -> None:
    # {output: loss} is Keras's per-output form; with one output it used to be read as {LossName: kwargs}.
    by_name = {**dense_head(3), "compile": {"loss": {"probs": "sparse_categorical_crossentropy"}}, "train": {"epochs": 1}}
    assert train(runner, write_config(by_name), runs_dir).exit_code == 0
    by_name["compile"]["loss"] = {"probz": "sparse_categorical_crossentropy"}
    result = train(runner, write_config(by_name), runs_dir / "none")
    assert result.exit_code == 2 and "compile.loss.probz: the model has no output `probz`" in result.output, result.output
    assert "did you mean `probs`?" in result.output
    result = runner.invoke(app, ["validate", str(write_config({"compile": {"loss": 3}}))])
    assert result.exit_code == 2 and "compile.loss: expected a loss: a name (`mse`)" in result.output, result.output
