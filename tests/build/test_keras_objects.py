"""Keras objects at any depth of an argument, callables by import path, one-element `inputs` — equal to plain Keras bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import only_run, train
from helpers_custom import halve_every_epoch
from typer.testing import CliRunner

from kerasrun._tf import keras
from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data
from kerasrun.rundir.io import read_json

SEQUENCES: dict[str, Any] = {
    "name": "objects",
    "seed": 5,
    "data": {"source": "synthetic", "generator": "random", "x_shape": [6, 3], "samples": 96, "classes": 3},
    "model": {
        "inputs": {"x": [6, 3]},
        "layers": [
            {"Rescaling": {"scale": 0.5}},  # Rescaling's from_config wants `offset` too; built as in Python, it is not needed
            {"Bidirectional": {"layer": {"LSTM": {"units": 4}}, "name": "recurrent"}},
            {
                "Dense": {"units": 3, "activation": "softmax", "kernel_initializer": {"RandomNormal": {"stddev": 0.3, "seed": 1}}},
                "inputs": ["recurrent"],
            },
        ],
    },
    "compile": {
        "optimizer": {
            "Adam": {"learning_rate": {"ExponentialDecay": {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}}}
        },
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["sparse_categorical_accuracy"],
    },
    "train": {"epochs": 3, "batch_size": 16, "shuffle": False, "validation_split": 0.25, "stratify": False},
}


def plain_keras(config_path: Path, callbacks: list[Any], optimizer: Any) -> dict[str, list[float]]:
    """The same experiment as a plain Keras script."""
    config = load_config(config_path, ["train.validation_split=null"])
    data = load_data(config)
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((6, 3), name="x")
    hidden = keras.layers.Rescaling(0.5)(inputs)
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(4), name="recurrent")(hidden)
    outputs = keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=1))(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    fitted = model.fit(
        data.train.x, data.train.y, batch_size=16, epochs=3, shuffle=False, validation_split=0.25, callbacks=callbacks, verbose=0
    )
    return {key: [float(v) for v in values] for key, values in fitted.history.items()}


def ours(runner: CliRunner, config: Path, runs: Path, *args: str) -> dict[str, list[float]]:
    """kerasrun's history.json for the config."""
    result = train(runner, config, runs, "--set", "compile.steps_per_execution=1", *args)
    assert result.exit_code == 0, result.output
    history = read_json(only_run(runs) / "history.json")
    history.pop("epoch")
    return history


def test_schedule_wrapped_layer_and_initializer_equal_plain_keras(write_config, runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(SEQUENCES)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    theirs = plain_keras(config, [], keras.optimizers.Adam(schedule))
    assert ours(runner, config, tmp_path / "fit") == theirs
    assert ours(runner, config, tmp_path / "custom", "--set", "train.loop=custom") == theirs


def test_a_callable_by_import_path_equals_plain_keras(write_config, runner: CliRunner, tmp_path: Path) -> None:
    changes = {
        "compile": {**SEQUENCES["compile"], "optimizer": {"SGD": {"learning_rate": 0.1}}},
        "train": {**SEQUENCES["train"], "callbacks": [{"LearningRateScheduler": {"schedule": "helpers_custom:halve_every_epoch"}}]},
    }
    config = write_config({**SEQUENCES, **changes})
    theirs = plain_keras(config, [keras.callbacks.LearningRateScheduler(halve_every_epoch)], keras.optimizers.SGD(0.1))
    assert ours(runner, config, tmp_path / "runs") == theirs


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"compile": {"optimizer": {"Adam": {"learning_rate": {"ExponentialDecayy": {"initial_learning_rate": 0.1}}}}}},
            "compile.optimizer.Adam.learning_rate.ExponentialDecayy: unknown learning-rate schedule `ExponentialDecayy`",
        ),
        (
            {"model": {"layers": [{"Dense": {"units": 3, "kernel_initializer": {"RandomNormal": {"stdev": 0.1}}}}]}},
            "model.layers[0].Dense.kernel_initializer.RandomNormal: RandomNormal rejected its arguments",
        ),
        (
            {"model": {"layers": [{"Bidirectional": {"layer": {"LTSM": {"units": 4}}}}]}},
            "model.layers[0].Bidirectional.layer.LTSM: unknown layer `LTSM`",
        ),
        (
            {"train": {"callbacks": [{"LearningRateScheduler": {"schedule": "helpers_custom:halve_every_epok"}}]}},
            "train.callbacks[0].LearningRateScheduler.schedule: module `helpers_custom` has no attribute `halve_every_epok`",
        ),
        (
            {"train": {"callbacks": [{"LearningRateScheduler": {"schedule": "helpers_custom:halve_every_epoch"}}]}},
            "train.callbacks[0]: LearningRateScheduler sets the learning rate, but compile.optimizer's learning_rate is a schedule",
        ),
    ],
    ids=["unknown-schedule", "initializer-argument", "wrapped-layer", "callable-typo", "schedule-and-scheduler"],
)
def test_validate_build_locates_nested_mistakes(write_config, runner: CliRunner, change: dict[str, Any], expected: str) -> None:
    sections = {key: {**SEQUENCES[key], **value} for key, value in change.items()}
    result = runner.invoke(app, ["validate", "--build", str(write_config({**SEQUENCES, **sections}))])
    assert result.exit_code == 2 and expected in result.output, result.output


def test_evaluate_steps_scores_exactly_that_many_batches(write_config, runner: CliRunner, tmp_path: Path) -> None:
    # With steps_per_execution 32, Keras would run whole executions past the limit; kerasrun keeps evaluate.steps exact.
    config = write_config({"evaluate": {"steps": 1, "batch_size": 16}, "compile": {"steps_per_execution": 32}})
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    test = load_data(load_config(config)).test
    first = model.evaluate(test.x[:16], test.y[:16], batch_size=16, return_dict=True, verbose=0)
    everything = model.evaluate(test.x, test.y, batch_size=16, return_dict=True, verbose=0)
    metrics = read_json(run / "metrics.json")
    assert metrics == pytest.approx(first, rel=1e-6) and metrics != pytest.approx(everything, rel=1e-6)


def test_a_text_layers_callable_argument_by_import_path() -> None:
    # `standardize` and `split` of TextVectorization take a function as well as a name: an import path is the function.
    from helpers_custom import keep_case

    from kerasrun.build.registry import resolve_layer

    layer = resolve_layer({"TextVectorization": {"standardize": "helpers_custom:keep_case", "vocabulary": ["a:b", "c"]}})
    assert layer._standardize is keep_case
    assert layer.get_vocabulary()[2:] == ["a:b", "c"]  # vocabulary is data: `a:b` is a token, not an import path
