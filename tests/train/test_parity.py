"""Exact numbers: kerasrun's fit equals a plain Keras script's fit, and steps_per_execution changes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import only_run

from kerasrun._tf import keras
from kerasrun.build.model import build_training_state
from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data, make_dataset
from kerasrun.rundir.io import read_json
from kerasrun.train.experiment import prepare_experiment

PARITY: dict[str, Any] = {
    "data": {"samples_per_class": 200, "test_fraction": None},
    "model": {
        "layers": [
            {"Dense": {"units": 16, "activation": "relu", "name": "hidden"}},
            {"Dense": {"units": 3, "activation": "softmax", "name": "out"}},
        ]
    },
    "compile": {"optimizer": {"RMSprop": {"learning_rate": 0.01}}, "steps_per_execution": 1},
    "train": {"epochs": 3, "batch_size": 32, "shuffle": False, "validation_split": 0.2, "stratify": False, "class_weight": {1: 2.0}},
}


def plain_keras_history(config_path) -> dict[str, list[float]]:
    """The same experiment written as a plain Keras script: arrays, class_weight and validation_split given to fit."""
    config = load_config(config_path, ["train.class_weight=null", "train.validation_split=null"])
    x, y = load_data(config).train.x, load_data(config).train.y
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((2,), name="x")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(hidden))
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, validation_split=0.2, class_weight={1: 2.0}, verbose=0)
    return history.history


def test_kerasrun_fit_equals_plain_keras_fit(runner, write_config, runs_dir) -> None:
    config = write_config(PARITY)
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs_dir), "--progress", "none"])
    assert result.exit_code == 0, result.output
    ours = read_json(only_run(runs_dir) / "history.json")
    theirs = plain_keras_history(config)
    assert set(theirs) == set(ours) - {"epoch"}
    for key, values in theirs.items():
        assert ours[key] == [float(v) for v in values], key  # bit-identical, not approximately equal


def test_steps_per_execution_gives_identical_history(runner, write_config, tmp_path) -> None:
    histories = []
    for spe in (1, 32):
        runs = tmp_path / f"spe{spe}"
        config = write_config({**PARITY, "train": {**PARITY["train"], "shuffle": True}})
        result = runner.invoke(
            app, ["train", str(config), "--runs-dir", str(runs), "--progress", "none", "--set", f"compile.steps_per_execution={spe}"]
        )
        assert result.exit_code == 0, result.output
        histories.append(read_json(only_run(runs) / "history.json"))
    assert histories[0] == histories[1]


def test_class_weight_equals_per_class_sample_weight(runner, write_config, tmp_path) -> None:
    histories = []
    for override in ("train.sample_weight=null", "train.class_weight=null"):
        runs = tmp_path / override.split(".")[1].split("=")[0]
        config = write_config({**PARITY, "train": {**PARITY["train"], "sample_weight": {"by_class": {1: 2.0}}}})
        result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs), "--progress", "none", "--set", override])
        assert result.exit_code == 0, result.output
        histories.append(read_json(only_run(runs) / "history.json"))
    assert histories[0] == histories[1]
    assert np.isfinite(histories[0]["loss"]).all()


@pytest.mark.parametrize("prebuild", [True, False])
def test_train_and_test_steps_are_traced_once(write_config, prebuild) -> None:
    """Variables made before the first trace spare tf.function its second trace (same numbers: see above)."""
    changes = {**PARITY, "compile": {**PARITY["compile"], "steps_per_execution": 4}, "train": {**PARITY.get("train", {}), "loop": "fit"}}
    config = load_config(write_config(changes))  # Keras's own train_step and test_step: fit's
    experiment = prepare_experiment(config)
    model, traces = experiment.model, []
    for step in ("train_step", "test_step"):
        original = getattr(model, step)

        def traced(data: Any, original: Any = original, step: str = step) -> Any:
            """Note the trace, then run Keras's step."""
            traces.append(step)
            return original(data)

        setattr(model, step, traced)
    train_ds = make_dataset(experiment.data.train, 32, True, config.seed)
    val_ds = make_dataset(experiment.data.validation, 32, False, config.seed)
    if prebuild:
        build_training_state(model, train_ds)
        assert model.optimizer.built
    experiment.trainer.fit(train_ds, val_ds, [], initial_epoch=0)
    # Keras alone creates the optimizer and metric variables inside the first trace, and traces again.
    assert traces == (["train_step", "test_step"] if prebuild else ["train_step", "train_step", "test_step"])


def test_an_untested_keras_takes_the_public_fallback_with_the_same_numbers(runner, write_config, tmp_path, monkeypatch) -> None:
    """On a Keras minor version kerasrun was not tested with, no private API is touched, and nothing changes but speed."""
    from kerasrun import keras_private

    assert keras_private.keras_minor("3.15.1") == (3, 15) and keras_private.keras_minor("3.16.0rc1") == (3, 16)
    config = write_config({**PARITY, "train": {**PARITY["train"], "shuffle": True}})
    histories = []
    for tested in (keras_private.TESTED, set()):
        monkeypatch.setattr(keras_private, "TESTED", tested)
        runs = tmp_path / f"tested-{bool(tested)}"
        result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs), "--progress", "none"])
        assert result.exit_code == 0, result.output
        histories.append(read_json(only_run(runs) / "history.json"))
    assert histories[0] == histories[1]
    assert keras_private.global_seed_state() is None and not keras_private.private_api_ok()
