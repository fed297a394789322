"""`source: tfrecord`: shards of tf.train.Example against the same examples as arrays, compression, weights, broken shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import SHARED_DATA, needs_mnist, only_run, train
from helpers_images import mnist_sample
from typer.testing import CliRunner

from kerasrun._tf import tf
from kerasrun.config.load import load_config
from kerasrun.data import Stream, load_data

pytestmark = needs_mnist

FEATURES = {
    "pixels": {"dtype": "float32", "shape": [784]},
    "digit": {"dtype": "int64", "shape": []},
    "weight": {"dtype": "float32", "shape": []},
}
BASE: dict[str, Any] = {
    "name": "records",
    "seed": 9,
    "data": {"source": "tfrecord", "files": "shards/train-*.tfrecord", "features": FEATURES, "inputs": ["pixels"], "targets": ["digit"]},
    "model": {
        "inputs": {"pixels": [784]},
        "layers": [{"Dense": {"units": 32, "activation": "relu"}}, {"Dense": {"units": 10, "activation": "softmax"}}],
    },
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "shuffle": False},
}


def example(pixels: np.ndarray, digit: int, weight: float, drop: str | None = None) -> bytes:
    """One serialized tf.train.Example (without the feature `drop`)."""
    feature = {
        "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=pixels.astype(np.float32).ravel() / 255.0)),
        "digit": tf.train.Feature(int64_list=tf.train.Int64List(value=[digit])),
        "weight": tf.train.Feature(float_list=tf.train.FloatList(value=[weight])),
    }
    feature.pop(drop or "", None)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shards(folder: Path, x: np.ndarray, y: np.ndarray, shards: int = 3, compression: str = "", drop_at: int | None = None) -> None:
    """x/y as `shards` TFRecord files, example i in shard i % shards; the example at `drop_at` lacks its digit."""
    folder.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type=compression)
    writers = [tf.io.TFRecordWriter(str(folder / f"train-{k}.tfrecord"), options) for k in range(shards)]
    for i, (pixels, digit) in enumerate(zip(x, y, strict=True)):
        writers[i % shards].write(example(pixels, int(digit), 1.0 + (digit == 3), "digit" if i == drop_at else None))
    for writer in writers:
        writer.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shards/train-{0,1,2}.tfrecord of 300 MNIST digits, and plain/gzip copies."""
    root = tmp_path_factory.mktemp("records")
    x, y = mnist_sample(SHARED_DATA / "mnist.npz", 30)
    write_shards(root / "shards", x, y)
    write_shards(root / "gzipped", x, y, compression="GZIP")
    np.savez(root / "written.npz", x=x, y=y)
    return root


def write(folder: Path, name: str, data: dict[str, Any] | None = None, **sections: Any) -> Path:
    """BASE with data keys and whole sections replaced, in `folder`."""
    config = {**BASE, "data": {**BASE["data"], **(data or {})}, **sections}
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_every_example_is_read_once(folder: Path) -> None:
    data = load_data(load_config(write(folder, "a.yaml", train={**BASE["train"], "validation_split": None})))
    assert isinstance(data.train, Stream) and len(data.train) == 300
    rows = list(data.train.elements().as_numpy_iterator())
    with np.load(folder / "written.npz") as written:
        expected = sorted(
            zip((written["x"].reshape(300, -1) / np.float32(255)).astype(np.float32).tolist(), written["y"].tolist(), strict=True)
        )
    got = sorted((x.tolist(), int(y)) for x, y in rows)
    assert [d for _, d in got] == [d for _, d in expected]
    np.testing.assert_allclose(np.array([p for p, _ in got]), np.array([p for p, _ in expected]), rtol=1e-6)
    assert np.bincount(data.train.y).tolist() == [30] * 10


def test_trains_exactly_like_the_same_examples_as_arrays(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write(folder, "b.yaml", {"sample_weight": "weight", "compression": "none"})
    stream = load_data(load_config(write(folder, "all.yaml", train={**BASE["train"], "validation_split": None}))).train
    xs, ys = zip(*stream.elements().as_numpy_iterator(), strict=True)  # the order the shards are read in
    np.savez(tmp_path / "same.npz", x=np.stack(xs), y=np.array(ys), w=np.where(np.array(ys) == 3, 2.0, 1.0).astype(np.float32))
    arrays = tmp_path / "arrays.yaml"
    arrays.write_text(
        yaml.safe_dump({**BASE, "data": {"source": "npz", "path": "same.npz", "x": "x", "y": "y", "sample_weight": "w"}}, sort_keys=False)
    )
    histories = []
    for path, runs in ((config, tmp_path / "records"), (arrays, tmp_path / "arrays")):
        result = train(runner, path, runs)
        assert result.exit_code == 0, result.output
        histories.append((only_run(runs) / "history.json").read_bytes())
    assert histories[0] == histories[1]
    gzipped = train(runner, write(folder, "g.yaml", {"files": "gzipped/train-*.tfrecord", "compression": "gzip"}), tmp_path / "gz")
    assert gzipped.exit_code == 0, gzipped.output
    unweighted = json.loads((only_run(tmp_path / "gz") / "history.json").read_text())
    assert unweighted != json.loads(histories[0])  # the weight feature changed the numbers


def test_broken_shards_and_specs(folder: Path, tmp_path: Path, runner: CliRunner) -> None:
    with np.load(folder / "written.npz") as written:
        write_shards(tmp_path / "shards", written["x"][:60], written["y"][:60], drop_at=40)
    result = train(runner, write(tmp_path, "m.yaml"), tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "data.files: cannot read train-1.tfrecord" in result.output and "digit" in result.output
    result = train(runner, write(tmp_path, "n.yaml", {"files": ["shards/train-0.tfrecord", "nothing-*.tfrecord"]}), tmp_path / "runs")
    assert result.exit_code == 2 and "data.files[1]: no file matches" in result.output, result.output
    result = train(runner, write(tmp_path, "r.yaml", {"inputs": ["pixels"], "targets": ["pixels"]}), tmp_path / "runs")
    assert result.exit_code == 2 and "not two of these" in result.output, result.output
    result = train(runner, write(tmp_path, "u.yaml", {"targets": ["label"]}), tmp_path / "runs")
    assert result.exit_code == 2 and "not in features: label" in result.output, result.output
    assert not (tmp_path / "runs").exists()
