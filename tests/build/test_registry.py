"""Keras objects from config specs: names, {Name: kwargs}, Keras dicts, import paths; errors with suggestions."""

from __future__ import annotations

import pytest

from kerasrun._tf import keras
from kerasrun.build.model import build_model, compile_model
from kerasrun.build.registry import resolve_callback, resolve_layer, resolve_loss, resolve_metric, resolve_optimizer
from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError
from kerasrun.imports import SpecError


def test_optimizer_forms() -> None:
    assert isinstance(resolve_optimizer("rmsprop"), keras.optimizers.RMSprop)
    adam = resolve_optimizer({"Adam": {"learning_rate": 0.5}})
    assert isinstance(adam, keras.optimizers.Adam) and float(adam.learning_rate) == 0.5
    sgd = resolve_optimizer({"class_name": "SGD", "config": {"learning_rate": 0.25}})
    assert isinstance(sgd, keras.optimizers.SGD) and float(sgd.learning_rate) == 0.25


def test_unknown_optimizer_suggests() -> None:
    with pytest.raises(SpecError) as info:
        resolve_optimizer("rmsprp")
    assert "unknown optimizer `rmsprp`" in str(info.value)
    assert "RMSprop" in (info.value.hint or "")


def test_layer_forms() -> None:
    dense = resolve_layer({"Dense": {"units": 3, "kernel_regularizer": {"L2": {"l2": 0.1}}}})
    assert isinstance(dense, keras.layers.Dense) and dense.units == 3
    assert isinstance(dense.kernel_regularizer, keras.regularizers.L2)
    assert isinstance(resolve_layer("Flatten"), keras.layers.Flatten)
    keras_dict = keras.layers.serialize(keras.layers.Dense(5, name="five"))
    assert resolve_layer(keras_dict).units == 5


def test_layer_by_import_path() -> None:
    layer = resolve_layer({"helpers_custom:ScaledDense": {"units": 2, "scale": 3.0}})
    assert layer.units == 2 and layer.scale == 3.0


def test_unknown_layer_suggests() -> None:
    with pytest.raises(SpecError) as info:
        resolve_layer({"Dens": {"units": 3}})
    assert "unknown layer `Dens`" in str(info.value) and "`Dense`" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["Input", "InputLayer"])
def test_an_input_as_a_layer_points_to_model_inputs(name: str) -> None:
    # Keras's own spelling: it used to be "did you mean `InputLayer`?", then "too many positional arguments".
    with pytest.raises(SpecError) as info:
        resolve_layer({name: {"shape": [64]}})
    assert str(info.value) == "inputs are declared in model.inputs, not as a layer"
    assert info.value.hint == "model: {inputs: {x: [64]}, layers: [...]} — drop this entry"


def test_layer_kwargs_rejected_by_keras() -> None:
    with pytest.raises(SpecError) as info:
        resolve_layer({"Dense": {"unit": 3}})
    assert "Keras rejected the arguments of Dense" in str(info.value) and "unit" in str(info.value)
    assert info.value.hint == "`unit`: did you mean `units`?"


@pytest.mark.parametrize(
    ("resolve", "spec", "hint"),
    [
        (resolve_layer, {"Dense": {"units": 3, "activaton": "relu"}}, "`activaton`: did you mean `activation`?"),
        (resolve_layer, {"Dropout": {"rate": 0.5, "nam": "drop"}}, "`nam`: did you mean `name`?"),  # a base Layer argument
        (resolve_layer, {"Dense": {"units": 3, "zzz": 1}}, "`zzz` is not an argument of Dense"),
        (resolve_optimizer, {"Adam": {"lr": 0.01}}, "`lr`: did you mean `learning_rate`?"),  # Keras 2's name
        (resolve_optimizer, {"SGD": {"momentun": 0.9}}, "`momentun`: did you mean `momentum` or `ema_momentum`?"),
        (resolve_callback, {"EarlyStopping": {"monitr": "loss"}}, "`monitr`: did you mean `monitor`?"),
        (resolve_layer, {"helpers_custom:ScaledDense": {"units": 2, "scael": 3.0}}, "`scael`: did you mean `scale`?"),
    ],
)
def test_a_misspelt_argument_gets_a_did_you_mean(resolve, spec, hint) -> None:
    with pytest.raises(SpecError) as info:
        resolve(spec)
    assert info.value.hint == hint


def test_unknown_nested_activation() -> None:
    with pytest.raises(SpecError) as info:
        resolve_layer({"Dense": {"units": 3, "activation": "rleu"}})
    assert "unknown activation `rleu`" in str(info.value) and "relu" in (info.value.hint or "")
    assert info.value.loc[-1] == "activation"


def test_loss_and_metric_forms() -> None:
    assert resolve_loss("mse") == "mse"
    loss = resolve_loss({"SparseCategoricalCrossentropy": {"from_logits": True}})
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy) and loss.from_logits
    assert resolve_loss("helpers_custom:half_mse").__name__ == "half_mse"
    assert resolve_metric("accuracy") == "accuracy"
    assert isinstance(resolve_metric({"AUC": {"num_thresholds": 50}}), keras.metrics.AUC)
    with pytest.raises(SpecError) as info:
        resolve_metric("acuracy")
    assert "unknown metric" in str(info.value) and "accuracy" in (info.value.hint or "").lower()
    with pytest.raises(SpecError):
        resolve_loss("sparse_categorical_crossentropi")


def test_callbacks(tmp_path) -> None:
    stop = resolve_callback({"EarlyStopping": {"monitor": "val_loss", "patience": 2}})
    assert isinstance(stop, keras.callbacks.EarlyStopping) and stop.patience == 2
    log = resolve_callback({"CSVLogger": {"filename": "log.csv"}}, run_dir=tmp_path)
    assert log.filename == str(tmp_path / "log.csv")
    with pytest.raises(SpecError) as info:
        resolve_callback("EarlyStoping")
    assert "`EarlyStopping`" in (info.value.hint or "")
    with pytest.raises(SpecError) as info:
        resolve_callback({"EarlyStopping": {"patienc": 2}})
    assert "rejected its arguments" in str(info.value)


def test_import_path_errors() -> None:
    with pytest.raises(SpecError) as info:
        resolve_layer("no_such_module_xyz:Thing")
    assert "cannot import module `no_such_module_xyz`" in str(info.value)
    with pytest.raises(SpecError) as info:
        resolve_layer("helpers_custom:ScaledDens")
    assert "no attribute `ScaledDens`" in str(info.value) and "ScaledDense" in (info.value.hint or "")


def test_build_collects_every_bad_layer_with_location(write_config) -> None:
    path = write_config(
        {
            "model": {"layers": [{"Dens": {"units": 3}}, {"Dense": {"unit": 3}}, {"Dense": {"units": 3, "activation": "softmax"}}]},
            "compile": {"optimizer": "adamm", "metrics": ["acuracy"]},
        }
    )
    config = load_config(path)
    with pytest.raises(ConfigError) as info:
        build_model(config)
    problems = info.value.problems
    assert [p.key for p in problems] == ["model.layers[0]", "model.layers[1]"]
    assert all(p.line is not None and p.file == str(path) for p in problems)
    config = load_config(write_config({"compile": {"optimizer": "adamm", "metrics": ["acuracy"]}}))
    model = build_model(config)
    with pytest.raises(ConfigError) as info:
        compile_model(model, config)
    assert [p.key for p in info.value.problems] == ["compile.optimizer", "compile.metrics[0]"]


def test_incompatible_layer_input_is_located(write_config) -> None:
    config = load_config(write_config({"model": {"layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}}]}}))
    with pytest.raises(ConfigError) as info:
        build_model(config)
    [problem] = info.value.problems
    assert problem.key == "model.layers[0]" and "Conv2D cannot take its input" in problem.message


def test_factory_model(write_config, tmp_path, monkeypatch) -> None:
    (tmp_path / "factory_mod.py").write_text(
        "import keras\n"
        "def make(units=4):\n"
        "    inputs = keras.Input((2,))\n"
        "    return keras.Model(inputs, keras.layers.Dense(units)(inputs))\n"
        "def not_model():\n    return 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(write_config({"model": {"inputs": None, "layers": None, "factory": "factory_mod:make", "kwargs": {"units": 3}}}))
    assert build_model(config).output_shape == (None, 3)
    config = load_config(write_config({"model": {"inputs": None, "layers": None, "factory": "factory_mod:not_model"}}))
    with pytest.raises(ConfigError, match=r"expected a keras\.Model"):
        build_model(config)


def test_per_output_metrics_on_a_factory_with_one_output_are_refused_by_validate_build(runner, write_config) -> None:
    from kerasrun.cli import app

    changes = {"model": {"inputs": None, "layers": None, "factory": "helpers_custom:sequence_model"}}  # functional: one output
    config = write_config({**changes, "compile": {"metrics": [["accuracy"], ["mse"]]}})
    assert runner.invoke(app, ["validate", str(config)]).exit_code == 0  # a factory's outputs are known once it is built
    result = runner.invoke(app, ["validate", "--build", str(config)])
    assert result.exit_code == 2
    assert (
        "compile.metrics: a list per output (2 lists), but the model has one output: give one flat list, e.g. [accuracy]" in result.output
    )


def test_a_layer_error_keras_wraps_gives_its_cause(write_config) -> None:
    # Keras's "Exception encountered when calling Concatenate.call()." hides the cause on its next, bold line.
    layers = [
        {"Dense": {"units": 4, "name": "h1"}},
        {"Dense": {"units": 4, "name": "h2"}, "inputs": "x"},
        {"Concatenate": {"axis": 2}, "inputs": ["h1", "h2"]},
        {"Dense": {"units": 3, "activation": "softmax"}},
    ]
    config = load_config(write_config({"model": {"inputs": {"x": [2]}, "layers": layers}}))
    with pytest.raises(ConfigError) as info:
        build_model(config)
    [problem] = info.value.problems
    assert problem.key == "model.layers[2]" and problem.message == "Concatenate cannot take its input: list index out of range"


def test_a_quoted_number_argument_is_named_as_text() -> None:
    # Keras says "Received: units=64", which hides that YAML read '64' as text.
    with pytest.raises(SpecError) as info:
        resolve_layer({"Dense": {"units": "64"}})
    assert info.value.hint == "`units` is the text '64' (quoted in the YAML): write 64 without quotes"
