"""`source: text_folder` with a `dtype: string` input and an adapted TextVectorization: equal to plain Keras bit for bit."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import only_run, train
from typer.testing import CliRunner

from kerasrun._tf import keras, tf
from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import load_data
from kerasrun.rundir.io import read_json

TEXT: dict[str, Any] = {
    "name": "reviews",
    "seed": 3,
    "data": {"source": "text_folder", "path": "train", "test_path": "test"},
    "model": {
        "inputs": {"review": {"shape": [], "dtype": "string"}},
        "layers": [
            {"TextVectorization": {"max_tokens": 100, "output_sequence_length": 24}},
            {"Embedding": {"input_dim": 100, "output_dim": 8}},
            {"GlobalAveragePooling1D": {}},
            {"Dense": {"units": 2, "activation": "softmax"}},
        ],
    },
    "compile": {
        "optimizer": {"Adam": {"learning_rate": 0.01}},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "steps_per_execution": 1,
    },
    "train": {"epochs": 3, "batch_size": 16, "validation_split": 0.25, "shuffle": False},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/{neg,pos}/*.txt (60 each) and test/ (10 each): seeded reviews with telling words."""
    root = tmp_path_factory.mktemp("texts")
    rng = random.Random(0)
    words = {"neg": ["awful", "boring", "terrible", "dull"], "pos": ["great", "lovely", "superb", "fun"]}
    filler = ["the", "movie", "plot", "actor", "scene", "was", "and", "a", "it"]
    for split, count in (("train", 60), ("test", 10)):
        for label, telling in words.items():
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                text = " ".join(rng.choice(filler + telling) for _ in range(rng.randint(4, 20)))
                (root / split / label / f"{i:03d}.txt").write_text(text)
    return root


def write(folder: Path, name: str, config: dict[str, Any]) -> Path:
    """A config file in `folder`."""
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_texts_are_read_in_kerass_seeded_order_as_bytes(folder: Path) -> None:
    data = load_data(load_config(write(folder, "a.yaml", {**TEXT, "train": {**TEXT["train"], "validation_split": None}})))
    assert data.class_names == ["neg", "pos"] and len(data.train) == 120 and len(data.test) == 20
    assert data.train.x.dtype == object and isinstance(data.train.x[0], bytes)
    # The training folder in the order text_dataset_from_directory(shuffle=True, seed=3) lists it; the test folder sorted.
    from keras.src.utils.dataset_utils import index_directory  # the listing text_dataset_from_directory runs

    paths, labels, _ = index_directory(str(folder / "train"), "inferred", formats=(".txt",), shuffle=True, seed=3)
    assert [Path(p).read_bytes() for p in paths] == list(data.train.x)
    assert data.train.y.tolist() == labels.tolist() != [0] * 60 + [1] * 60
    assert data.test.y.tolist() == [0] * 10 + [1] * 10
    assert data.test.x[0] == (folder / "test" / "neg" / "000.txt").read_bytes()


def test_adapted_text_vectorization_equals_plain_keras(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write(folder, "b.yaml", TEXT)
    result = train(runner, config, tmp_path / "fit")
    assert result.exit_code == 0, result.output
    assert re.search(r"note: adapted TextVectorization `text_vectorization(_\d+)?` on the training split \(90 samples\)", result.output)
    run = only_run(tmp_path / "fit")
    ours = read_json(run / "history.json")
    ours.pop("epoch")
    data = load_data(load_config(config, ["train.validation_split=null"]))
    x, y = tf.constant(list(data.train.x)), data.train.y  # Keras's fit takes text as a string tensor
    keras.utils.set_random_seed(3)
    vectorize = keras.layers.TextVectorization(max_tokens=100, output_sequence_length=24)
    inputs = keras.Input((), dtype="string", name="review")
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(100, 8)(vectorize(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    vectorize.adapt(x[: math.floor(len(x) * 0.75)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    theirs = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, validation_split=0.25, verbose=0).history
    assert ours == {key: [float(v) for v in values] for key, values in theirs.items()}
    custom = train(runner, config, tmp_path / "custom", "--set", "train.loop=custom")
    assert custom.exit_code == 0, custom.output
    assert (only_run(tmp_path / "custom") / "history.json").read_bytes() == (run / "history.json").read_bytes()
    evaluated = runner.invoke(app, ["evaluate", str(run)])  # the vocabulary is in the saved model
    assert evaluated.exit_code == 0, evaluated.output


def test_text_and_numbers_must_match_the_inputs(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    numeric_input = {**TEXT, "model": {**TEXT["model"], "inputs": {"review": [1]}}}
    result = train(runner, write(folder, "c.yaml", numeric_input), tmp_path / "runs")
    assert result.exit_code == 2 and "holds Python objects" in result.output, result.output
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "n.npz", x_train=rng.normal(size=(20,)), y_train=np.arange(20) % 2)
    numbers = {**TEXT, "data": {"source": "npz", "path": "n.npz"}}
    result = train(runner, write(tmp_path, "d.yaml", numbers), tmp_path / "runs")
    assert result.exit_code == 2 and "should hold text for the model's string input" in result.output, result.output
    (folder / "empty" / "neg").mkdir(parents=True)
    (folder / "empty" / "pos").mkdir()
    (folder / "empty" / "pos" / "a.txt").write_text("fine")
    result = train(runner, write(folder, "e.yaml", {**TEXT, "data": {"source": "text_folder", "path": "empty"}}), tmp_path / "runs")
    assert result.exit_code == 2 and "empty/neg has no text files" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_texts_over_the_memory_limit_are_refused(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    (folder / "big" / "a").mkdir(parents=True)
    (folder / "big" / "b").mkdir()
    for name in ("a", "b"):
        (folder / "big" / name / "long.txt").write_text("word " * 300_000)  # 1.5 MB each
    config = write(folder, "big.yaml", {**TEXT, "data": {"source": "text_folder", "path": "big", "memory_limit_mb": 1}})
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2 and "data.memory_limit_mb" in result.output and "over memory_limit_mb 1" in result.output, result.output


def test_a_validation_split_holds_every_class_and_refuses_an_untrained_one(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    import shutil

    config = write(folder, "v.yaml", {**TEXT, "data": {"source": "text_folder", "path": "train"}})
    data = load_data(load_config(config))
    assert sorted(np.unique(data.validation.y).tolist()) == [0, 1]  # sorted files would validate on `pos` only
    assert data.train.y.tolist() == load_data(load_config(config)).train.y.tolist()
    shutil.copytree(folder / "train", tmp_path / "train")
    (tmp_path / "train" / "zz").mkdir()
    (tmp_path / "train" / "zz" / "only.txt").write_text("a lone review")
    split_at = math.floor(121 * 0.75)  # the lone file is last in sorted order: find a seed that holds it out
    seed = next(s for s in range(1000) if int(np.flatnonzero(np.random.RandomState(s).permutation(121) == 120)[0]) >= split_at)
    lone = write(tmp_path, "z.yaml", {**TEXT, "seed": seed, "data": {"source": "text_folder", "path": "train"}})
    result = train(runner, lone, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "train.validation_split: the training split has 0 samples of class 2 (zz): 1 validation sample" in result.output
    assert "a class with one sample in all can't be in both splits: add samples of it, or drop it" in result.output
    assert "set train.stratify" not in result.output  # it can't help: stratifying refuses a one-sample class
    stratified = train(runner, lone, tmp_path / "runs", "--set", "train.stratify=true")
    assert stratified.exit_code == 2 and "train.stratify: cannot stratify" in stratified.output, stratified.output
    assert "every class needs 2 samples or more to be split in proportion" in stratified.output
    assert not (tmp_path / "runs").exists()
