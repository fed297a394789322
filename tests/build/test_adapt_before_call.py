"""Lookups adapted as they are wired in (keras.io's adapt-then-call): one-hot widths known to the Dense after them, equal to plain Keras bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import only_run, train
from typer.testing import CliRunner

from kerasrun._tf import keras, tf
from kerasrun.cli import app
from kerasrun.rundir.io import read_json

SEED, EPOCHS, BATCH = 4, 2, 16
# keras.io "Structured data classification from scratch", in small: one string and two integer categorical features.
FEATURES = {"thal": "StringLookup", "ca": "IntegerLookup", "sex": "IntegerLookup"}
LOOKUPS: dict[str, Any] = {
    "name": "lookups",
    "seed": SEED,
    "data": {
        "source": "npz",
        "path": "heart.npz",
        "x": {name: name for name in FEATURES},
        "y": "target",
        "x_val": {name: f"{name}_val" for name in FEATURES},
        "y_val": "target_val",
    },
    "model": {
        "inputs": {
            "thal": {"shape": [1], "dtype": "string"},
            "ca": {"shape": [1], "dtype": "int64"},
            "sex": {"shape": [1], "dtype": "int64"},
        },
        "layers": [
            *({kind: {"output_mode": "one_hot", "name": f"{name}_lookup"}, "inputs": name} for name, kind in FEATURES.items()),
            {"Concatenate": {"name": "all_features"}, "inputs": [f"{name}_lookup" for name in FEATURES]},
            {"Dense": {"units": 32, "activation": "relu"}},
            {"Dropout": {"rate": 0.5}},
            {"Dense": {"units": 1, "activation": "sigmoid"}},
        ],
    },
    "compile": {"optimizer": "adam", "loss": "binary_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": EPOCHS, "batch_size": BATCH, "shuffle": True},
}


def heart_arrays(n: int = 100, n_val: int = 30) -> dict[str, np.ndarray]:
    """Training and validation columns: `thal` strings ('<U10', read without pickle), `ca`/`sex` int64, a target that depends on them."""
    rng = np.random.default_rng(1)
    arrays: dict[str, np.ndarray] = {}
    for suffix, rows in (("", n), ("_val", n_val)):
        thal = rng.choice(np.array(["normal", "fixed", "reversible"], dtype="<U10"), size=(rows, 1))
        ca = rng.integers(0, 4, size=(rows, 1), dtype=np.int64)
        sex = rng.integers(0, 2, size=(rows, 1), dtype=np.int64)
        target = ((thal[:, 0] == "reversible") | (ca[:, 0] > 1)).astype(np.int64)
        arrays |= {f"thal{suffix}": thal, f"ca{suffix}": ca, f"sex{suffix}": sex, f"target{suffix}": target}
    return arrays


def write_recipe(folder: Path, config: dict[str, Any] | None = None) -> Path:
    """heart.npz and the recipe's config in `folder`."""
    np.savez(str(folder / "heart.npz"), **heart_arrays())  # type: ignore[arg-type]  # numpy stubs type **kwds as `allow_pickle`
    path = folder / "lookups.yaml"
    path.write_text(yaml.safe_dump(config or LOOKUPS, sort_keys=False))
    return path


def with_entry(index: int, **changes: Any) -> dict[str, Any]:
    """The recipe with model.layers[index]'s entry changed."""
    layers = [dict(entry) for entry in LOOKUPS["model"]["layers"]]
    layers[index] |= changes
    return {**LOOKUPS, "model": {**LOOKUPS["model"], "layers": layers}}


def plain_keras(arrays: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """The keras.io script: each lookup created, adapted on its training column, then called; fit with kerasrun's per-epoch order."""
    keras.utils.set_random_seed(SEED)
    inputs = {
        "thal": keras.Input((1,), name="thal", dtype="string"),
        "ca": keras.Input((1,), name="ca", dtype="int64"),
        "sex": keras.Input((1,), name="sex", dtype="int64"),
    }
    encoded = []
    for name, kind in FEATURES.items():
        lookup = getattr(keras.layers, kind)(output_mode="one_hot")
        lookup.adapt(arrays[name])
        encoded.append(lookup(inputs[name]))
    features = keras.layers.Concatenate()(encoded)
    # One layer a statement: `Dropout(0.5)(Dense(32)(x))` would create the Dropout first, and draw its seed before the kernel's.
    hidden = keras.layers.Dense(32, activation="relu")(features)
    hidden = keras.layers.Dropout(0.5)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    x, y = {name: arrays[name] for name in FEATURES}, arrays["target"]
    # As keras.io feeds it: a tf.data dataset of (features, target) batches (Keras's array adapter takes no NumPy strings).
    validation = tf.data.Dataset.from_tensor_slices(({name: arrays[f"{name}_val"] for name in FEATURES}, arrays["target_val"])).batch(BATCH)
    history: dict[str, list[float]] = {}
    for epoch in range(EPOCHS):
        # kerasrun's train.shuffle: epoch e reads the samples in the order stateless_shuffle(range(n), seed=(seed, e)).
        order = tf.random.experimental.stateless_shuffle(tf.range(len(y), dtype=tf.int64), seed=[SEED, epoch]).numpy()
        shuffled = {name: column[order] for name, column in x.items()}
        batches = tf.data.Dataset.from_tensor_slices((shuffled, y[order])).batch(BATCH)
        logs = model.fit(batches, epochs=epoch + 1, initial_epoch=epoch, validation_data=validation, verbose=0).history
        for key, values in logs.items():
            history.setdefault(key, []).extend(float(v) for v in values)
    return history


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The recipe trained once with fit: (config, run folder, CLI output)."""
    folder = tmp_path_factory.mktemp("lookups")
    config = write_recipe(folder)
    result = train(CliRunner(), config, folder / "runs", "--set", "train.loop=fit")
    assert result.exit_code == 0, result.output
    return config, only_run(folder / "runs"), result.output


def test_one_hot_lookups_before_a_dense_equal_the_keras_io_script(recipe_run: tuple[Path, Path, str]) -> None:
    _, run, output = recipe_run
    ours = read_json(run / "history.json")
    assert ours.pop("epoch") == [1, 2]
    assert ours == plain_keras(heart_arrays())  # bit-identical numbers
    for name, kind in FEATURES.items():
        assert f"note: adapted {kind} `{name}_lookup` on the training split (100 samples)" in output, output
    # The saved model carries the vocabularies: 3 strings and 4 (or 2) integers, each with the OOV slot.
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.get_layer("all_features").output.shape == (None, 4 + 5 + 3)


def test_the_custom_loop_and_a_resume_give_the_same_bytes(recipe_run: tuple[Path, Path, str], runner: CliRunner, tmp_path: Path) -> None:
    config, run, _ = recipe_run
    result = train(runner, config, tmp_path / "custom", "--set", "train.loop=custom")
    assert result.exit_code == 0, result.output
    assert (only_run(tmp_path / "custom") / "history.json").read_bytes() == (run / "history.json").read_bytes()
    # Ctrl-C at the start of epoch 2, then resume: the lookups are adapted again as the model is rebuilt, the weights come back.
    marker = tmp_path / "interrupted"
    interrupt = {"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 1}}
    interrupted = write_recipe(tmp_path, {**LOOKUPS, "train": {**LOOKUPS["train"], "loop": "fit", "callbacks": [interrupt]}})
    result = train(runner, interrupted, tmp_path / "runs")
    assert result.exit_code == 130, result.output
    resumed = runner.invoke(app, ["resume", str(only_run(tmp_path / "runs")), "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    assert (only_run(tmp_path / "runs") / "history.json").read_bytes() == (run / "history.json").read_bytes()


def test_a_lookup_not_adapted_is_named_with_the_fix(runner: CliRunner, tmp_path: Path) -> None:
    config = write_recipe(tmp_path, with_entry(0, adapt=False))
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "model.layers[4]: Dense cannot take its input" in result.output, result.output
    assert (
        "StringLookup `thal_lookup` (model.layers[0]) is not adapted (its entry says `adapt: false`), so the width is "
        "unknown: give its `vocabulary` (or `max_tokens` with `pad_to_max_tokens: true`)"
    ) in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_validate_build_and_plot_model_adapt_on_the_training_split(runner: CliRunner, tmp_path: Path) -> None:
    # They read the data only because a layer must adapt before the Dense after it can be built; what they show, trains.
    config = write_recipe(tmp_path)
    result = runner.invoke(app, ["validate", "--build", str(config)])
    assert result.exit_code == 0, result.output
    assert "dense" in result.output.lower() and "Traceback" not in result.output
    result = runner.invoke(app, ["plot-model", str(config), "-o", str(tmp_path / "model.png")])
    assert result.exit_code in (0, 1), result.output  # 1: no pydot/Graphviz here, the text summary instead
    assert "Dense cannot take its input" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_lookup_that_cannot_learn_from_its_column(runner: CliRunner, tmp_path: Path) -> None:
    config = write_recipe(tmp_path, with_entry(1, IntegerLookup=None, StringLookup={"output_mode": "one_hot", "name": "ca_lookup"}))
    text = yaml.safe_load(config.read_text())
    text["model"]["layers"][1].pop("IntegerLookup")
    config.write_text(yaml.safe_dump(text, sort_keys=False))
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "model.layers[1]: cannot adapt StringLookup `ca_lookup` on the training split:" in result.output, result.output
    assert "give its `vocabulary` (or `max_tokens` with `pad_to_max_tokens: true`), or set `adapt: false` on the entry" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_a_factory_that_cannot_build_without_adapting_is_told_how(runner: CliRunner, tmp_path: Path) -> None:
    data = {**LOOKUPS["data"], "x": {"ca": "ca"}, "x_val": {"ca": "ca_val"}}
    factory = {**LOOKUPS, "data": data, "model": {"factory": "helpers_custom:unadapted_lookup_model"}}
    result = train(runner, write_recipe(tmp_path, factory), tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "model.factory: ValueError:" in result.output and "fully-defined" in result.output, result.output
    assert "adapt a preprocessing layer inside the factory before calling it" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_a_layer_after_the_lookups_adapts_on_what_the_model_so_far_makes_of_the_data(tmp_path: Path) -> None:
    from kerasrun.build.model import build_model
    from kerasrun.config.load import load_config
    from kerasrun.data import load_data

    # A Normalization after the Concatenate: adapted on the three inputs (one of strings) put through the adapted lookups.
    layers = [*LOOKUPS["model"]["layers"][:4], {"Normalization": {"axis": -1, "name": "scaled"}}, *LOOKUPS["model"]["layers"][4:]]
    config = load_config(write_recipe(tmp_path, {**LOOKUPS, "model": {**LOOKUPS["model"], "layers": layers}}))
    data = load_data(config)
    model = build_model(config, data)
    arrays = heart_arrays()
    one_hot = np.concatenate([np.asarray(model.get_layer(f"{name}_lookup")(tf.constant(arrays[name]))) for name in FEATURES], axis=1)
    np.testing.assert_allclose(np.asarray(model.get_layer("scaled").mean).ravel(), one_hot.mean(axis=0), rtol=1e-6)
    assert any("adapted Normalization `scaled` on the training split (100 samples)" in note for note in data.notes)
