"""configs/heart_structured_csv.yaml — keras.io "Structured data classification from scratch" — equals the plain Keras script bit for bit.

The CSV is a seeded stand-in with heart.csv's columns (no network here). The plain script reads it with the csv
module, creates each column's preprocessing layer, adapts it on the training rows and calls it (keras.io's order),
then Concatenate → Dense → Dropout → Dense, and fits with kerasrun's split and per-epoch shuffle order.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import REPO, only_run, train, write_heart_csv
from typer.testing import CliRunner

from kerasrun.rundir.io import read_json

CONFIG = REPO / "configs" / "heart_structured_csv.yaml"
EPOCHS = 3


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The recipe trained once, in memory with fit, for EPOCHS epochs: (the CSV, the run folder)."""
    folder = tmp_path_factory.mktemp("heart")
    path = write_heart_csv(folder / "heart.csv")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HEART_CSV", str(path))
        result = train(CliRunner(), CONFIG, folder / "runs", "--set", f"train.epochs={EPOCHS}", "--set", "train.loop=fit")
    assert result.exit_code == 0, result.output
    assert "note: adapted StringLookup `thal_encoded` on the training split (242 samples)" in result.output, result.output
    return path, only_run(folder / "runs")


def plain_keras(path: Path) -> dict[str, list[float]]:
    """The keras.io script on the same CSV: adapt each layer on the training rows, then call it; fit epoch by epoch in kerasrun's order."""
    from kerasrun._tf import keras, tf

    spec: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    types, seed, batch = spec["data"]["column_types"], spec["seed"], spec["train"]["batch_size"]
    with path.open(newline="") as f:
        table = list(csv.DictReader(f))
    kinds = {"int64": (int, np.int64), "string": (str, object)}
    columns = {}
    for name in spec["data"]["features"]:
        read, dtype = kinds.get(types.get(name, ""), (float, np.float32))
        columns[name] = np.array([[read(row[name])] for row in table], dtype=dtype)
    y = np.array([int(row["target"]) for row in table], dtype=np.int64)
    split = math.floor(len(y) * (1 - spec["train"]["validation_split"]))  # Keras's rule: the last 20% validate
    train_x = {name: column[:split] for name, column in columns.items()}
    val_x = {name: tf.constant(column[split:]) for name, column in columns.items()}

    keras.utils.set_random_seed(seed)
    inputs = {name: keras.Input((1,), name=name, dtype=types.get(name, "float32")) for name in columns}
    encoded = []
    for name in columns:  # numeric columns first, then the integer and text categories, as the config lists them
        kind = {"int64": keras.layers.IntegerLookup, "string": keras.layers.StringLookup}.get(types.get(name, ""))
        layer = kind(output_mode="one_hot") if kind else keras.layers.Normalization()
        # The training column itself, as kerasrun adapts in memory (keras.io adapts Normalization on a tf.data of the column,
        # which Keras averages batch by batch: the mean can differ in its last bit).
        layer.adapt(train_x[name] if types.get(name) != "string" else tf.constant(train_x[name]))
        encoded.append(layer(inputs[name]))
    features = keras.layers.Concatenate()(encoded)
    hidden = keras.layers.Dense(32, activation="relu")(features)
    hidden = keras.layers.Dropout(0.5)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    # kerasrun's default compile.steps_per_execution is 32 (a plain script tuned for speed sets it the same way).
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], steps_per_execution=32)
    validation = tf.data.Dataset.from_tensor_slices((val_x, y[split:])).batch(batch)
    history: dict[str, list[float]] = {}
    for epoch in range(EPOCHS):
        # kerasrun's train.shuffle: epoch e reads the rows in the order stateless_shuffle(range(n), seed=(seed, e)).
        order = tf.random.experimental.stateless_shuffle(tf.range(split, dtype=tf.int64), seed=[seed, epoch]).numpy()
        rows = tf.data.Dataset.from_tensor_slices(({name: tf.constant(c[order]) for name, c in train_x.items()}, y[:split][order]))
        logs = model.fit(rows.batch(batch), epochs=epoch + 1, initial_epoch=epoch, validation_data=validation, verbose=0).history
        for key, values in logs.items():
            history.setdefault(key, []).extend(float(v) for v in values)
    return history


def test_the_recipe_equals_the_keras_io_script(recipe: tuple[Path, Path]) -> None:
    path, run = recipe
    ours = read_json(run / "history.json")
    assert ours.pop("epoch") == list(range(1, EPOCHS + 1))
    assert ours == plain_keras(path)  # bit-identical numbers


def test_the_saved_model_keeps_what_was_adapted(recipe: tuple[Path, Path], runner: CliRunner) -> None:
    from kerasrun._tf import keras

    _, run = recipe
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    vocabulary = model.get_layer("thal_encoded").get_vocabulary()  # by frequency in the training rows, after the OOV token
    assert vocabulary[0] == "[UNK]" and sorted(vocabulary[1:]) == ["fixed", "normal", "reversible"]
    # 6 normalized numbers, then one-hot widths: sex 2+1, cp 5+1, fbs 2+1, restecg 3+1, exang 2+1, ca 4+1, thal 3+1.
    assert model.get_layer("all_features").output.shape == (None, 6 + 3 + 6 + 3 + 4 + 3 + 5 + 4)
