"""Preprocessing layers adapted on the training split inside the model: equal to plain Keras's adapt-then-fit, bit for bit."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import only_run, train
from typer.testing import CliRunner

from kerasrun._tf import keras
from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data
from kerasrun.rundir.io import read_json

REGRESSION: dict[str, Any] = {
    "name": "adapted",
    "seed": 2,
    "data": {"source": "sklearn", "name": "diabetes", "test_fraction": 0.2},
    "model": {
        "inputs": {"x": [10]},
        "layers": [{"Normalization": {"axis": -1}}, {"Dense": {"units": 16, "activation": "relu"}}, {"Dense": {"units": 1}}],
    },
    "compile": {"optimizer": {"Adam": {"learning_rate": 0.01}}, "loss": "mse", "metrics": ["mae"], "steps_per_execution": 1},
    "train": {"epochs": 3, "batch_size": 32, "validation_split": 0.2, "shuffle": False},
}


def write(folder: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    """A config file in `folder`."""
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def with_layers(layers: list[Any], **sections: Any) -> dict[str, Any]:
    """REGRESSION with other layers (and sections)."""
    return {**REGRESSION, "model": {**REGRESSION["model"], "layers": layers}, **sections}


def plain_keras(config_path: Path) -> dict[str, list[float]]:
    """The tutorial's script: adapt a Normalization layer on the training arrays, then fit."""
    config = load_config(config_path, ["train.validation_split=null"])
    x, y = load_data(config).train.x, load_data(config).train.y
    keras.utils.set_random_seed(config.seed)
    normalization = keras.layers.Normalization(axis=-1)
    inputs = keras.Input((10,), name="x")
    hidden = keras.layers.Dense(16, activation="relu")(normalization(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    normalization.adapt(x[: math.floor(len(x) * 0.8)])  # the training part of validation_split only
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, validation_split=0.2, verbose=0).history
    return {key: [float(v) for v in values] for key, values in history.items()}


@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The regression trained once with fit: (config, run folder, CLI output)."""
    folder = tmp_path_factory.mktemp("adapt")
    config = write(folder, REGRESSION)
    result = train(CliRunner(), config, folder / "runs")
    assert result.exit_code == 0, result.output
    return config, only_run(folder / "runs"), result.output


def test_adapt_then_fit_equals_plain_keras(adapted_run: tuple[Path, Path, str], runner: CliRunner, tmp_path: Path) -> None:
    config, run, output = adapted_run
    ours = read_json(run / "history.json")
    ours.pop("epoch")
    assert ours == plain_keras(config)
    assert re.search(r"note: adapted Normalization `normalization(_\d+)?` on the training split \(282 samples\)", output), output
    result = train(runner, config, tmp_path / "custom", "--set", "train.loop=custom")
    assert result.exit_code == 0, result.output
    assert read_json(only_run(tmp_path / "custom") / "history.json") == read_json(run / "history.json")


def test_the_saved_model_carries_the_statistics(adapted_run: tuple[Path, Path, str], runner: CliRunner) -> None:
    _, run, _ = adapted_run
    result = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert read_json(run / "metrics.json")["mae"] == pytest.approx(json.loads(result.stdout)["mae"], rel=1e-6)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    mean = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)).mean
    assert np.any(np.asarray(mean) != 0)


def test_adapt_false_trains_the_identity_and_says_nothing(tmp_path: Path, runner: CliRunner, adapted_run: tuple[Path, Path, str]) -> None:
    layers = [{"Normalization": {"axis": -1}, "adapt": False}, *REGRESSION["model"]["layers"][1:]]
    result = train(runner, write(tmp_path, with_layers(layers)), tmp_path / "runs")
    assert result.exit_code == 0 and "note: adapted" not in result.output, result.output
    assert read_json(only_run(tmp_path / "runs") / "history.json") != read_json(adapted_run[1] / "history.json")


def test_a_layer_after_others_adapts_on_what_reaches_it(tmp_path: Path) -> None:
    from kerasrun.build.model import build_model

    layers = [{"Rescaling": {"scale": 10.0}}, {"Discretization": {"num_bins": 4}}, {"Dense": {"units": 1}}]
    config = load_config(write(tmp_path, with_layers(layers, train={**REGRESSION["train"], "validation_split": None})))
    data = load_data(config)
    model = build_model(config, data)  # adapted as it is wired in
    boundaries = next(layer for layer in model.layers if isinstance(layer, keras.layers.Discretization)).bin_boundaries
    expected = keras.layers.Discretization(num_bins=4)
    expected.adapt(data.train.x * 10.0)
    assert boundaries == expected.bin_boundaries


def test_a_streamed_source_adapts_from_its_batches(tmp_path: Path) -> None:
    from kerasrun.build.model import build_model

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 4))
    lines = ["a,b,c,d,y"] + [",".join(f"{v:.4f}" for v in row) + f",{row.sum():.4f}" for row in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    csv = {"source": "csv", "path": "t.csv", "target": "y", "stream": True}
    layers = [{"Normalization": {"axis": -1}}, {"Dense": {"units": 1}}]
    config = load_config(write(tmp_path, with_layers(layers, data=csv, model={"inputs": {"x": [4]}, "layers": layers})))
    data = load_data(config)
    model = build_model(config, data)  # adapted as it is wired in
    train_rows = np.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1, dtype=np.float32)[: math.floor(500 * 0.8), :4]
    normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    np.testing.assert_allclose(np.asarray(normalization.mean).ravel(), train_rows.mean(axis=0), rtol=1e-4)


def test_adapt_true_on_a_layer_without_adapt(tmp_path: Path, runner: CliRunner) -> None:
    layers = [{"Dense": {"units": 4}, "adapt": True}, {"Dense": {"units": 1}}]
    result = train(runner, write(tmp_path, with_layers(layers)), tmp_path / "runs")
    assert result.exit_code == 2 and "model.layers[0].adapt: Dense has no adapt method" in result.output, result.output
    assert not (tmp_path / "runs").exists()
    result = runner.invoke(app, ["validate", str(write(tmp_path, with_layers([{"Dense": {"units": 1}, "adapt": "yes"}]), "v.yaml"))])
    assert result.exit_code == 2 and "`adapt` of a layer must be true or false" in result.output, result.output


@pytest.mark.slow
def test_adapt_under_a_mirrored_strategy(adapted_run: tuple[Path, Path, str], tmp_path: Path) -> None:
    # Adapted inside the strategy's scope on two logical CPUs: the same statistics, so the same history up to summation order.
    from helpers import kerasrun_process

    config, run, _ = adapted_run
    args = ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--progress", "plain", "--set", "runtime.strategy=mirrored"]
    out = kerasrun_process(args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "note: adapted Normalization" in out.stderr
    mirrored, single = read_json(only_run(tmp_path / "runs") / "history.json"), read_json(run / "history.json")
    assert read_json(only_run(tmp_path / "runs") / "run.json")["placement"]["replicas"] == 2
    for key in single:
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-4)
