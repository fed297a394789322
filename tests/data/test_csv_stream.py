"""`source: csv` with `stream: true` against the same file read into memory, exact resume, and files broken mid-way."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import merge, only_run, train
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import Stream, load_data

ROWS = 1500  # more than the 1,000 rows the reader checks with Python's csv module: later rows are tf.data's alone

BASE: dict[str, Any] = {
    "name": "stream",
    "seed": 4,
    "data": {"source": "csv", "path": "table.csv", "target": "label", "stream": True, "test_fraction": 0.2},
    "model": {
        "inputs": {"x": [4]},
        "layers": [
            {"Dense": {"units": 16, "activation": "relu"}},
            {"Dropout": {"rate": 0.1}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ],
    },
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": 2, "batch_size": 64, "validation_split": 0.2},
}


def write_table(path: Path, rows: int = ROWS, label: str = "text", edit: dict[int, str] | None = None) -> Path:
    """A seeded 3-class table: four features and a text (cat/dog/eel) or integer label; `edit` replaces whole data lines."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    names = np.array(["cat", "dog", "eel"]) if label == "text" else np.array(["0", "1", "2"])
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.5f}" for v in row) + f",{names[k]}" for row, k in zip(x, y, strict=True)]
    for number, text in (edit or {}).items():
        lines[number - 1] = text  # line numbers as a text editor shows them (the header is line 1)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding table.csv."""
    root = tmp_path_factory.mktemp("csv")
    write_table(root / "table.csv")
    return root


def write(folder: Path, name: str, changes: dict[str, Any]) -> Path:
    """A config in `folder`, BASE with `changes` merged one level deep."""
    path = folder / name
    path.write_text(yaml.safe_dump(merge(BASE, changes), sort_keys=False))
    return path


def trained(runner: CliRunner, config: Path, runs: Path, *args: str) -> Path:
    """Train and return the run folder."""
    result = train(runner, config, runs, *args)
    assert result.exit_code == 0, result.output
    return only_run(runs)


def files(run: Path) -> tuple[bytes, bytes]:
    """history.json and metrics.json, as bytes."""
    return (run / "history.json").read_bytes(), (run / "metrics.json").read_bytes()


@pytest.mark.parametrize("extra", [{}, {"class_weight": "balanced", "stratify": True}], ids=["plain", "balanced-stratified"])
def test_streamed_trains_exactly_like_in_memory_without_shuffling(
    folder: Path, runner: CliRunner, tmp_path: Path, extra: dict[str, Any]
) -> None:
    # Same rows held out (test_fraction, validation_split, stratify), same weights, same order: the same numbers.
    streamed = write(folder, "s.yaml", {"train": {"shuffle": False, **extra}})
    in_memory = write(folder, "m.yaml", {"data": {"stream": False}, "train": {"shuffle": False, **extra}})
    assert files(trained(runner, streamed, tmp_path / "s")) == files(trained(runner, in_memory, tmp_path / "m"))


def test_shuffled_stream_is_the_same_with_both_loops_and_after_resume(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write(folder, "r.yaml", {"train": {"epochs": 3}})
    fit = trained(runner, config, tmp_path / "fit")
    custom = trained(runner, config, tmp_path / "custom", "--set", "train.loop=custom")
    assert files(fit) == files(custom)
    # Two epochs, then resumed to three: the stream's order is a function of (seed, epoch) alone.
    short = trained(runner, config, tmp_path / "short", "--set", "train.epochs=2")
    result = runner.invoke(app, ["resume", str(short), "--set", "train.epochs=3", "--progress", "none"])
    assert result.exit_code == 0, result.output
    assert files(short) == files(fit)
    history = json.loads((fit / "history.json").read_text())
    assert len(set(history["loss"])) == 3


def test_splits_hold_the_rows_the_in_memory_reader_holds(folder: Path) -> None:
    streamed = load_data(load_config(write(folder, "a.yaml", {"train": {"stratify": True}})))
    in_memory = load_data(load_config(write(folder, "b.yaml", {"data": {"stream": False}, "train": {"stratify": True}})))
    assert isinstance(streamed.train, Stream) and streamed.class_names == ["cat", "dog", "eel"]
    for name in ("train", "validation", "test"):
        mine, theirs = getattr(streamed, name), getattr(in_memory, name)
        assert len(mine) == len(theirs)
        np.testing.assert_array_equal(mine.y, theirs.y)
        rows = list(mine.elements().as_numpy_iterator())
        np.testing.assert_array_equal(np.stack([x for x, _ in rows]), theirs.x)
    assert streamed.train.labels is not None and streamed.train.labels.dtype == np.uint8  # a byte per row, not the features


def test_data_command_on_a_stream(folder: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["data", str(write(folder, "d.yaml", {})), "--json", "--seconds", "0.3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["train"]["streamed"] and report["train"]["rows"] + report["validation"]["rows"] + report["test"]["rows"] == ROWS
    assert sum(report["test"]["classes"].values()) == report["test"]["rows"] == ROWS // 5
    assert report["throughput"]["samples"] > 0


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({1200: "0.1,0.2,0.3,cat"}, "table.csv line 1200 has 4 fields, the header 5"),
        ({1300: "0.1,oops,0.3,0.4,cat"}, "table.csv line 1300, column `b`: 'oops' is not a number"),
        ({1400: "0.1,0.2,0.3,nan,cat"}, "table.csv: data row 1399 holds NaN or inf (feature 3)"),
    ],
    ids=["ragged", "text-feature", "nan"],
)
def test_a_bad_row_after_the_first_thousand_is_located(tmp_path: Path, runner: CliRunner, edit: dict[int, str], expected: str) -> None:
    write_table(tmp_path / "table.csv", edit=edit)
    result = train(runner, write(tmp_path, "c.yaml", {}), tmp_path / "runs")
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_target_type_mistakes(tmp_path: Path, runner: CliRunner) -> None:
    write_table(tmp_path / "table.csv", label="int", edit={1250: "0.1,0.2,0.3,0.4,7.5"})
    result = train(runner, write(tmp_path, "c.yaml", {}), tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "line 1250, column `label`: '7.5' is not an integer (declare data.column_types for it)" in result.output
    result = train(runner, write(tmp_path, "t.yaml", {"data": {"column_types": {"lable": "int64"}}}), tmp_path / "runs")
    assert result.exit_code == 2 and "data.column_types.lable: table.csv has no column `lable`" in result.output, result.output
    assert "did you mean `label`?" in result.output
    write_table(tmp_path / "table.csv")
    write_table(tmp_path / "test.csv", rows=50, edit={10: "0.1,0.2,0.3,0.4,fox"})
    result = train(runner, write(tmp_path, "u.yaml", {"data": {"test_fraction": None, "test_path": "test.csv"}}), tmp_path / "runs")
    assert result.exit_code == 2 and "test.csv has labels the training file has not: ['fox']" in result.output, result.output
    bad_reshape = {"data": {"preprocess": [{"reshape": [3, 3]}]}}
    result = train(runner, write(tmp_path, "p.yaml", bad_reshape), tmp_path / "runs")
    assert result.exit_code == 2 and "data.preprocess" in result.output, result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"compile": {"metrics": [], "weighted_metrics": ["AUC"]}},
            "compile.weighted_metrics[0]: train, validation and test targets for output `dense",
        ),
        (
            {"compile": {"metrics": [], "weighted_metrics": [{"MeanIoU": {"num_classes": 2}}]}},  # no static check knows it
            "compile.weighted_metrics: the first training batch does not go through the weighted_metrics: ",
        ),
        (
            {"compile": {"metrics": ["accuracy", "mse"]}},  # mse on integer labels: (64,) against (64, 3)
            "are 1 wide, but the output has 3 units: mse compares targets and outputs element by element "
            "(class labels: use sparse_categorical_crossentropy)",
        ),
        (
            {"compile": {"metrics": ["categorical_accuracy"]}},  # Keras would report a number that is not the accuracy
            "are 1 wide, but the output has 3 units: categorical_accuracy wants one-hot rows as wide as the output "
            "(integer labels: use sparse_categorical_accuracy, or `accuracy`)",
        ),
        (
            {"train": {"callbacks": [{"EarlyStopping": {"monitor": "val_accuracyy"}}]}},
            "the model logs no metric `val_accuracyy`",
        ),
    ],
    ids=["auc-weighted", "first-batch", "metric-shapes", "metrics-for-one-hot", "monitor"],
)
def test_metrics_that_cannot_take_streamed_labels_are_refused_before_the_run_folder(
    folder: Path, runner: CliRunner, tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    # One batch read from the stream goes through the metrics, as an array batch does: exit 2, not exit 1 in the first step.
    result = train(
        runner, write(folder, "m.yaml", {**changes, "train": {**BASE["train"], "epochs": 1, **changes.get("train", {})}}), tmp_path / "runs"
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output, result.output
    assert "Traceback" not in result.output and "Graph execution error" not in result.output
    assert not (tmp_path / "runs").exists()


def test_targets_that_are_not_classes_are_checked_on_the_first_streamed_batch(runner: CliRunner, tmp_path: Path) -> None:
    # A regression target is not held in memory (only class labels are): its first batch is checked as arrays are.
    write_table(tmp_path / "table.csv", rows=200, label="int")
    changes = {"data": {"column_types": {"label": "float32"}}, "compile": {"loss": "mse", "metrics": []}, "train": {"epochs": 1}}
    config = write(tmp_path, "r.yaml", changes)
    assert load_data(load_config(config)).train.labels is None
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert re.search(
        r"compile\.loss: train targets for output `dense\w*` are 1 wide, but the output has 3 units: mse compares targets and outputs",
        result.output,
    ), result.output
    assert not (tmp_path / "runs").exists()


def test_seed_zero_shuffles_tf_data_sources(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    # TensorFlow's seed handling once failed on a tensor op seed with the global seed 0 (see epochs.seeded_shuffle).
    first = trained(runner, write(folder, "z.yaml", {"seed": 0}), tmp_path / "a")
    again = trained(runner, write(folder, "z.yaml", {"seed": 0}), tmp_path / "b")
    assert files(first) == files(again)


def test_weights_column_two_inputs_and_smoke_match_in_memory(tmp_path: Path, runner: CliRunner) -> None:
    write_table(tmp_path / "plain.csv")
    lines = (tmp_path / "plain.csv").read_text().splitlines()
    weighted = [lines[0] + ",w"] + [line + f",{1 + (i % 3) / 2}" for i, line in enumerate(lines[1:])]
    (tmp_path / "table.csv").write_text("\n".join(weighted) + "\n")
    data = {"sample_weight": "w", "features": {"left": ["a", "b"], "right": ["c", "d"]}}
    model = {
        "inputs": {"left": [2], "right": [2]},
        "layers": [
            {"Concatenate": {"name": "both"}, "inputs": ["left", "right"]},
            {"Dense": {"units": 8, "activation": "relu"}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ],
    }
    train_section = {"shuffle": False, "class_weight": "balanced", "stratify": True}
    streamed = write(tmp_path, "s.yaml", {"data": data, "model": model, "train": train_section})
    in_memory = write(tmp_path, "m.yaml", {"data": {**data, "stream": False}, "model": model, "train": train_section})
    assert files(trained(runner, streamed, tmp_path / "s")) == files(trained(runner, in_memory, tmp_path / "m"))
    smoke = train(runner, streamed, tmp_path / "smoke", "--smoke")
    assert smoke.exit_code == 0, smoke.output


def test_streams_shard_by_data_under_multi_worker(folder: Path) -> None:
    from kerasrun._tf import tf
    from kerasrun.data import make_dataset

    data = load_data(load_config(write(folder, "w.yaml", {})))
    dataset = make_dataset(data.train, 64, True)
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


@pytest.mark.slow
@pytest.mark.cluster  # multi-worker sharding by data is in CI through test_multi_worker_resume
def test_multi_worker_launch_reads_a_stream_sharded_by_data(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    from helpers import kerasrun_process

    # No Dropout: its random masks differ per replica, so only the data path is compared.
    layers = [layer for layer in BASE["model"]["layers"] if "Dropout" not in layer]
    config = write(folder, "mw.yaml", {"train": {"shuffle": False}, "model": {"layers": layers}})
    single = json.loads((trained(runner, config, tmp_path / "single") / "history.json").read_text())
    out = kerasrun_process(
        ["launch", str(config), "--workers", "2", "--runs-dir", str(tmp_path / "launch"), "--progress", "plain"], timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    launched = json.loads((only_run(tmp_path / "launch") / "history.json").read_text())
    assert launched.keys() == single.keys()
    for key in single:
        np.testing.assert_allclose(launched[key], single[key], rtol=1e-4)


def test_steps_per_epoch_on_a_stream_resumes_exactly(folder: Path, runner: CliRunner, tmp_path: Path) -> None:
    # An endless stream of seeded passes, read from epoch x steps_per_epoch on: a resumed run reads what the whole run read.
    config = write(folder, "spe.yaml", {"train": {"epochs": 3, "steps_per_epoch": 7}})
    whole = trained(runner, config, tmp_path / "whole")
    short = trained(runner, config, tmp_path / "short", "--set", "train.epochs=2")
    result = runner.invoke(app, ["resume", str(short), "--set", "train.epochs=3", "--progress", "none"])
    assert result.exit_code == 0, result.output
    assert files(short) == files(whole)
