"""`--json` and `--progress json` keep stdout JSON-only for every data source, whatever Keras prints meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import HAS_MNIST, SHARED_DATA, TINY, kerasrun_process, merge, only_run
from helpers_images import write_image_folder
from typer.testing import CliRunner

from kerasrun.cli import app

ROWS = 60
# A text folder feeds a string input through TextVectorization (adapted on the training split).
TEXT_MODEL = {
    "inputs": {"text": {"shape": [], "dtype": "string"}},
    "layers": [
        {"TextVectorization": {"max_tokens": 50, "output_sequence_length": 8}},
        {"Embedding": {"input_dim": 50, "output_dim": 4}},
        {"GlobalAveragePooling1D": {}},
        {"Dense": {"units": 3, "activation": "softmax"}},
    ],
}


def write_tfrecord(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """TFRecord shards of tf.train.Example with a `x` float feature and a `y` integer label."""
    from kerasrun._tf import tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for features, label in zip(x, y, strict=True):
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "x": tf.train.Feature(float_list=tf.train.FloatList(value=features.tolist())),
                        "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                    }
                )
            )
            writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny config per data source (3 classes, 2 features where a source has features), in one folder."""
    folder = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(ROWS, 2)).astype("float32")
    y = np.arange(ROWS) % 3
    np.savez(folder / "d.npz", x=x, y=y)
    table = "a,b,label\n" + "".join(f"{a:.4f},{b:.4f},{label}\n" for (a, b), label in zip(x, y, strict=True))
    (folder / "t.csv").write_text(table)
    write_tfrecord(folder / "r.tfrecord", x, y)
    write_image_folder(rng.integers(0, 255, size=(ROWS, 8, 8), dtype=np.uint8), y, folder / "images")
    for index, label in enumerate(y):
        texts = folder / "texts" / f"class{label}"
        texts.mkdir(parents=True, exist_ok=True)
        (texts / f"{index}.txt").write_text(f"text number {index} of class {label}")
    data: dict[str, dict[str, Any]] = {
        "synthetic": TINY["data"],
        "npz": {"source": "npz", "path": "d.npz", "x": "x", "y": "y"},
        "csv": {"source": "csv", "path": "t.csv", "target": "label"},
        "csv_stream": {"source": "csv", "path": "t.csv", "target": "label", "stream": True},
        "sklearn": {"source": "sklearn", "name": "iris"},
        "python": {"source": "python", "function": "helpers_custom:two_blobs"},
        "tfrecord": {
            "source": "tfrecord",
            "files": "r.tfrecord",
            "features": {"x": {"dtype": "float32", "shape": [2]}, "y": {"dtype": "int64", "shape": []}},
            "inputs": ["x"],
            "targets": ["y"],
        },
        "image_folder": {"source": "image_folder", "path": "images", "image_size": [8, 8], "color_mode": "grayscale"},
        "text_folder": {"source": "text_folder", "path": "texts"},
    }
    if HAS_MNIST:
        data["keras"] = {"source": "keras", "name": "mnist", "dir": str(SHARED_DATA)}
    configs = {}
    for name, section in data.items():
        configs[name] = folder / f"{name}.yaml"
        model = TEXT_MODEL if name == "text_folder" else TINY["model"]
        config = merge({**TINY, "data": section, "model": model}, {"train": {"validation_split": 0.25, "stratify": None}})
        configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return configs


@pytest.mark.parametrize(
    "source", ["synthetic", "npz", "csv", "csv_stream", "sklearn", "python", "tfrecord", "image_folder", "text_folder", "keras"]
)
def test_data_json_is_the_only_thing_on_stdout(sources: dict[str, Path], source: str) -> None:
    if source not in sources:
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    result = CliRunner().invoke(app, ["data", str(sources[source]), "--json", "--seconds", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert report["train"]["rows"] > 0 or report["train"].get("batches"), report
    if source == "text_folder":  # Keras's loader prints this; it must not land on stdout
        assert "Found 60 files belonging to 3 classes." in result.stderr


@pytest.mark.slow  # three real processes, each importing TensorFlow
def test_a_folder_source_in_real_processes_keeps_stdout_json(sources: dict[str, Path], tmp_path: Path) -> None:
    config = sources["text_folder"]
    data = kerasrun_process(["data", str(config), "--json", "--seconds", "0"])
    assert data.returncode == 0, data.stderr
    assert json.loads(data.stdout)["train"]["rows"] == 45 and "Found 60 files" in data.stderr
    runs = tmp_path / "runs"
    trained = kerasrun_process(["train", str(config), "--runs-dir", str(runs), "--progress", "json"])
    assert trained.returncode == 0, trained.stderr
    lines = [json.loads(line) for line in trained.stdout.splitlines()]  # every line is JSON: one per epoch
    assert [line["epoch"] for line in lines] == [1, 2, 3] and "Found 60 files" in trained.stderr
    scored = kerasrun_process(["evaluate", str(only_run(runs)), "--split", "validation", "--json"])
    assert scored.returncode == 0, scored.stderr
    assert set(json.loads(scored.stdout)) >= {"loss"} and "Found 60 files" in scored.stderr
