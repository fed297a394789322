"""The data contract, checked before any folder exists: broken files, wrong dtypes, lengths, empty splits, labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import only_run, train

from kerasrun.cli import app

NOT_SYNTHETIC = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}
RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 2)).astype(np.float32)
Y = RNG.integers(0, 3, size=60)


def npz_config(
    write_config: Any, tmp_path: Path, arrays: dict[str, Any] | None = None, raw: bytes | None = None, changes: dict[str, Any] | None = None
) -> Path:
    """TINY reading data.npz written from `arrays` (or the raw bytes of a broken file)."""
    path = tmp_path / "data.npz"
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.savez(path, **(arrays if arrays is not None else {"x_train": X, "y_train": Y, "x_test": X[:10], "y_test": Y[:10]}))
    return write_config({"data": {"source": "npz", "path": str(path), **NOT_SYNTHETIC}, **(changes or {})})


def refused(runner: Any, config: Path, runs_dir: Path) -> str:
    """Train, expecting exit 2 with no traceback and no run folder; the output."""
    result = train(runner, config, runs_dir)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not list(runs_dir.iterdir())
    return result.output


def test_well_formed_npz_trains(runner, write_config, tmp_path, runs_dir) -> None:
    assert train(runner, npz_config(write_config, tmp_path), runs_dir).exit_code == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not a zip at all", "data.path: cannot read data.npz: it is not a NumPy .npz file (not a zip archive)"),
        (None, "data.path: cannot read data.npz: not a complete .npz file"),  # truncated, below
    ],
)
def test_unreadable_npz_files(runner, write_config, tmp_path, runs_dir, raw, message) -> None:
    if raw is None:
        np.savez(tmp_path / "whole.npz", x_train=X, y_train=Y)
        raw = (tmp_path / "whole.npz").read_bytes()[:300]
    assert message in refused(runner, npz_config(write_config, tmp_path, raw=raw), runs_dir)


def test_pickled_objects_are_refused(runner, write_config, tmp_path, runs_dir) -> None:
    objects = np.empty(60, dtype=object)
    objects[:] = [{"a": i} for i in range(60)]
    output = refused(runner, npz_config(write_config, tmp_path, {"x_train": objects, "y_train": Y}), runs_dir)
    assert "holds pickled Python objects; kerasrun reads plain numeric arrays only" in output


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": X.astype(str), "y_train": Y}, "data.x: data.npz: x of the train split holds text (dtype <U"),
        ({"x_train": X.astype(np.complex64), "y_train": Y}, "holds complex numbers"),
        ({"x_train": X, "y_train": Y[:50]}, "the train split's arrays differ in length (x 60, y 50)"),
        ({"x_train": X[:0], "y_train": Y[:0]}, "the train split has no rows"),
        ({"x_train": X, "y_train": Y, "x_test": X[:0], "y_test": Y[:0]}, "the test split has no rows"),
    ],
)
def test_arrays_that_cannot_train(runner, write_config, tmp_path, runs_dir, arrays, message) -> None:
    assert message in refused(runner, npz_config(write_config, tmp_path, arrays), runs_dir)


@pytest.mark.parametrize(
    ("y", "loss", "message"),
    [
        (
            np.where(Y == 2, 12, Y),
            None,
            "` go up to label 12, but the output has 3 units: sparse_categorical_crossentropy wants labels in [0, 3) (give it at least 13 units)",
        ),
        (
            np.where(Y == 2, -1, Y),
            None,
            "range over -1..1, but the output has 3 units: sparse_categorical_crossentropy wants labels in [0, 3)",
        ),
        (Y + 0.5, None, "hold non-integer labels such as 0.5"),
        (np.eye(4)[Y], "categorical_crossentropy", "are 4 wide, but the output has 3 units"),
        (Y, "categorical_crossentropy", "are 1 wide, but the output has 3 units"),
        (np.eye(3)[Y], None, "are one-hot rows of width 3, but sparse_categorical_crossentropy wants integer labels"),
        (Y, "binary_crossentropy", "range over 0..2, but binary_crossentropy wants values in [0, 1]"),
    ],
)
def test_targets_must_fit_the_output_and_its_loss(runner, write_config, tmp_path, runs_dir, y, loss, message) -> None:
    changes = {"compile": {"loss": loss}} if loss else {}
    config = npz_config(write_config, tmp_path, {"x_train": X, "y_train": y}, changes=changes)
    output = refused(runner, config, runs_dir)
    assert "compile.loss: " in output and message in output


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """A CSV file with the given text."""
    path.write_bytes(text.encode(encoding))
    return path


def csv_config(write_config: Any, path: Path, **data: Any) -> Path:
    """TINY reading a CSV file with features a, b and target label."""
    return write_config(
        {
            "data": {"source": "csv", "path": str(path), "target": "label", **NOT_SYNTHETIC, **data},
            "train": {"validation_split": None, "stratify": False},
        }
    )


GOOD_ROWS = "".join(f"{a:.3f},{b:.3f},{label}\n" for (a, b), label in zip(X, Y, strict=True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,label\n", "data.path: t.csv has a header but no rows"),
        ("a,b,label\n1,2,0\n1,2\n", "t.csv line 3 has 2 fields, the header 3"),
        ("a,a,label\n1,2,0\n", "t.csv names columns more than once: a"),
        ("a,b,label\n1,2,0\n1,x,1\n", "t.csv line 3, column `b`: 'x' is not a number"),
        (
            "a;b;label\n1;2;0\n",
            "data.path: t.csv's header is one column, `a;b;label`: its columns are not separated by ','\n    set data.delimiter: ';'",
        ),
        ("a,b,label\n1,2,0\nNA,2,1\n", "t.csv line 3, column `a`: 'NA' is not a number\n    it looks like a missing value: fill it in"),
    ],
)
def test_broken_csv_files(runner, write_config, tmp_path, runs_dir, text, message) -> None:
    assert message in refused(runner, csv_config(write_config, write_csv(tmp_path / "t.csv", text)), runs_dir)


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("labels", ["text", "numbers"])
def test_an_empty_label_is_refused_not_read_as_a_class(runner, write_config, tmp_path, runs_dir, stream, labels) -> None:
    # It used to be a class '' (sorted first, every label shifted by one; numbers then read as text labels '0', '1', …).
    rows = GOOD_ROWS.splitlines()
    if labels == "text":
        rows = [row.rsplit(",", 1)[0] + "," + "abc"[int(row[-1])] for row in rows]
    rows[7] = rows[7].rsplit(",", 1)[0] + ","
    path = write_csv(tmp_path / "t.csv", "a,b,label\n" + "\n".join(rows) + "\n")
    output = refused(runner, csv_config(write_config, path, stream=stream), runs_dir)
    where = "data row 8" if stream else "line 9"  # the streamed reader counts data rows (it skips blank lines unnumbered)
    assert f"data.target: t.csv {where}, column `label`: the label is missing" in output, output
    assert "give every row a label, or drop the rows without one" in output


def test_csv_encoding(runner, write_config, tmp_path, runs_dir) -> None:
    path = write_csv(
        tmp_path / "t.csv", "a,b,label\n" + GOOD_ROWS.replace("0\n", "café\n").replace("1\n", "thé\n").replace("2\n", "eau\n"), "latin-1"
    )
    output = refused(runner, csv_config(write_config, path), runs_dir)
    assert "t.csv is not utf-8 text" in output and "set data.encoding, e.g. encoding: latin-1" in output
    assert train(runner, csv_config(write_config, path, encoding="latin-1"), runs_dir).exit_code == 0


# --------------------------------------------------------------------------- predict


@pytest.fixture
def run(runner, write_config, tmp_path) -> Path:
    """A trained tiny run."""
    assert train(runner, write_config({"train": {"epochs": 1}}), tmp_path / "runs").exit_code == 0
    return only_run(tmp_path / "runs")


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((0, 2), np.float32), "--input: holds no samples"),
        (np.array([[1.0, np.nan]], np.float32), "--input: holds NaN or inf at index (0, 1)"),
        (np.zeros((3, 5), np.float32), "its samples have shape (5,) after the run's preprocessing, but the model takes (2,)"),
        (np.array([["a", "b"]]), "holds <U1 values; features must be numbers"),
        (np.zeros(2, np.float32), "it looks like one sample of shape (2,): save it as a batch of one, array[None] (shape (1, 2))"),
    ],
)
def test_predict_checks_its_input(runner, run, tmp_path, features, message) -> None:
    np.save(tmp_path / "in.npy", features)
    result = runner.invoke(app, ["predict", str(run), "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "out.npy")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out.npy").exists()


def test_predict_never_overwrites_its_input(runner, run, tmp_path) -> None:
    np.save(tmp_path / "in.npy", X[:3])
    before = (tmp_path / "in.npy").read_bytes()
    result = runner.invoke(app, ["predict", str(run), "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "." / "in.npy")])
    assert result.exit_code == 2 and "is the --input file" in result.output
    assert (tmp_path / "in.npy").read_bytes() == before


# --------------------------------------------------------------------------- found by review: valid setups stay valid


PYTHON = {"source": "python", **NOT_SYNTHETIC}


def test_sequence_labels_and_ignore_class_are_not_refused(runner, write_config, tmp_path) -> None:
    sequences = {
        "data": {**PYTHON, "function": "helpers_custom:sequence_data"},
        "model": {"inputs": None, "layers": None, "factory": "helpers_custom:sequence_model"},
        "compile": {"loss": {"SparseCategoricalCrossentropy": {"from_logits": True}}, "metrics": []},
        "train": {"validation_split": None, "stratify": False, "epochs": 1},
    }
    assert train(runner, write_config(sequences), tmp_path / "a").exit_code == 0  # labels (n, 10) for logits (n, 10, 5)
    ignoring = {"compile": {"loss": {"SparseCategoricalCrossentropy": {"ignore_class": -1}}}, "train": {"epochs": 1}}
    config = npz_config(write_config, tmp_path, {"x_train": X, "y_train": np.where(Y == 2, -1, Y)}, changes=ignoring)
    assert train(runner, config, tmp_path / "b").exit_code == 0


def test_a_compute_loss_without_training_and_names_with_underscores(runner, write_config, tmp_path) -> None:
    model = {"inputs": None, "layers": None, "factory": "helpers_custom:loss_without_training"}
    assert train(runner, write_config({"model": model, "train": {"epochs": 1}}), tmp_path / "a").exit_code == 0
    layers = [{"Dense": {"units": 8, "name": "_hidden"}}, {"Dense": {"units": 3, "activation": "softmax", "name": "-out"}}]
    assert train(runner, write_config({"model": {"layers": layers}, "train": {"epochs": 1}}), tmp_path / "b").exit_code == 0


def test_the_first_batch_changes_no_state(write_config) -> None:
    from kerasrun._tf import keras
    from kerasrun.build.checks import check_first_batch
    from kerasrun.config.load import load_config
    from kerasrun.data import Data, Split

    inputs = keras.Input((5, 2), batch_size=4)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.LSTM(4, stateful=True)(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model(np.zeros((4, 5, 2), np.float32))  # built; its state is zeros
    before = [np.array(v) for v in [*model.variables, *model.metrics_variables]]
    data = Data(Split(RNG.normal(size=(8, 5, 2)).astype(np.float32), Y[:8]))
    assert check_first_batch(model, data, load_config(write_config({"train": {"batch_size": 4}}))) is None
    after = [np.array(v) for v in [*model.variables, *model.metrics_variables]]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))  # the LSTM's state and the trackers included


# --------------------------------------------------------------------------- found by review: mistakes that slipped through


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train": {"class_weight": {0: float("nan")}}}, "the weight of label 0 must be a finite number >= 0"),
        ({"train": {"sample_weight": {"by_class": {1: -3.0}}}}, "the weight of label 1 must be a finite number >= 0, got -3.0"),
        ({"train": {"class_weight": {0.5: 2.0}}}, "label 0.5 is not an integer class label"),
        ({"train": {"class_weight": {0: True}}}, "the weight of label 0 must be a finite number >= 0, got True"),
        ({"data": {"test_fraction": 0.999}}, "data.test_fraction: cannot hold out a test fraction of 0.999 from 300 samples"),
        ({"data": {**PYTHON, "function": "helpers_custom:ragged_lists"}}, "returned data kerasrun can't read: ValueError"),
        ({"data": {**PYTHON, "function": "helpers_custom:only_features"}}, "returned data kerasrun can't read: KeyError: 'y_train'"),
        ({"data": {**PYTHON, "function": "helpers_custom:no_batches"}}, "the generator yielded no batches"),
    ],
)
def test_more_mistakes_are_refused_before_training(runner, write_config, runs_dir, changes, message) -> None:
    assert message in refused(runner, write_config(changes), runs_dir)


def test_arrays_per_split_from_a_python_source(runner, write_config, runs_dir) -> None:
    changes = {"data": {**PYTHON, "function": "helpers_custom:tuples_by_split"}, "train": {"validation_split": None, "stratify": False}}
    assert train(runner, write_config(changes), runs_dir).exit_code == 0


def test_npz_members_that_are_not_arrays(runner, write_config, tmp_path, runs_dir) -> None:
    import zipfile

    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", X.tobytes())  # raw bytes, no .npy header
        np.save(tmp_path / "y.npy", Y)
        archive.write(tmp_path / "y.npy", "y_train.npy")
    config = write_config({"data": {"source": "npz", "path": str(path), **NOT_SYNTHETIC}})
    output = refused(runner, config, runs_dir)
    assert "cannot read odd.npz" in output or "`x_train` is not a NumPy array" in output


def test_predict_keeps_a_first_row_with_a_typo(runner, run, tmp_path) -> None:
    (tmp_path / "in.csv").write_text("1.0,x\n0.5,0.5\n")
    result = runner.invoke(app, ["predict", str(run), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.npy")])
    assert result.exit_code == 2 and "line 1: 'x' is not a number" in result.output  # not silently taken for a header


# --------------------------------------------------------------------------- #23: refused while loading, before any run folder

TEN_CLASSES = {"generator": "random", "means": None, "cov": None, "samples_per_class": None, "x_shape": [4], "classes": 10, "samples": 80}
TEN_UNITS = {"inputs": {"x": [4]}, "layers": [{"Dense": {"units": 10, "activation": "softmax"}}]}


def test_synthetic_data_larger_than_memory_is_refused_before_allocating(runner, write_config, runs_dir) -> None:
    changes = {"data": {**TEN_CLASSES, "x_shape": [10], "samples": 2**31}, "model": {"inputs": {"x": [10]}}}
    output = refused(runner, write_config(changes), runs_dir)
    assert "data.samples: generating this data needs about 264.0 GiB (23,622,320,128 values drawn in float64, kept in float32)" in output
    assert "more than this machine's" in output and "lower samples" in output


@pytest.mark.parametrize(
    ("encoding", "message", "hint"),
    [
        ("utf-8", "data.path: t.csv holds NUL characters: it is not utf-8 text", "set data.encoding: utf-16-le"),
        ("utf-16", "data.path: t.csv is not utf-16 text: UTF-16 stream does not start with BOM", "set data.encoding: utf-16-le"),
    ],
)
def test_utf16_csv_without_a_byte_order_mark(runner, write_config, tmp_path, runs_dir, encoding, message, hint) -> None:
    path = write_csv(tmp_path / "t.csv", "a,b,label\n" + GOOD_ROWS, "utf-16-le")
    output = refused(runner, csv_config(write_config, path, encoding=encoding), runs_dir)
    assert message in output and hint in output
    assert train(runner, csv_config(write_config, path, encoding="utf-16-le"), runs_dir).exit_code == 0


def test_column_types_are_applied_in_memory_too(runner, write_config, tmp_path, runs_dir) -> None:
    from kerasrun.config.load import load_config
    from kerasrun.data import load_data

    path = write_csv(tmp_path / "t.csv", "a,b,label\n" + GOOD_ROWS)
    data = load_data(load_config(csv_config(write_config, path, column_types={"label": "string"})))
    assert data.class_names == ["0", "1", "2"] and data.train.y.dtype == np.int64
    floats = load_data(load_config(csv_config(write_config, path, column_types={"label": "float32"})))
    assert floats.train.y.dtype == np.float32
    broken = write_csv(tmp_path / "u.csv", "a,b,label\n1,2,0\n1,2,0.5\n")
    output = refused(runner, csv_config(write_config, broken, column_types={"label": "int64"}), runs_dir)
    assert "data.column_types.label: u.csv line 3, column `label`: '0.5' is not an integer" in output


def test_a_metric_that_cannot_take_the_targets_is_refused_at_its_key(runner, write_config, runs_dir) -> None:
    # Keras fails in the first step with "Argument `segment_ids` and `data` should have same leading dimension".
    changes = {"data": TEN_CLASSES, "model": TEN_UNITS, "compile": {"metrics": [], "weighted_metrics": ["AUC"]}, "train": {"epochs": 1}}
    output = refused(runner, write_config(changes), runs_dir)
    assert "compile.weighted_metrics[0]: train, validation and test targets for output" in output, output
    assert "are 1 wide, but the output has 10 units: AUC wants a 0/1 target for every output unit" in output
    # What the static checks don't know goes through the first batch: a metric Keras can't apply to these outputs.
    odd = {**changes, "compile": {"metrics": [], "weighted_metrics": [{"MeanIoU": {"num_classes": 2}}]}}
    output = refused(runner, write_config(odd, name="odd.yaml"), runs_dir)
    assert "compile.weighted_metrics: the first training batch does not go through the weighted_metrics: " in output, output
    assert "each metric must fit the targets (integer labels or one-hot rows) and the output it is given" in output
    fine = {**changes, "compile": {"metrics": ["sparse_categorical_accuracy"], "weighted_metrics": ["accuracy"]}}
    assert train(runner, write_config(fine), runs_dir).exit_code == 0


def test_a_named_target_the_model_lacks_is_refused_by_validate_build(runner, write_config, tmp_path, runs_dir) -> None:
    path = write_csv(tmp_path / "t.csv", "a,b,label\n" + GOOD_ROWS)
    config = csv_config(write_config, path, target={"nope": "label"})
    assert runner.invoke(app, ["validate", str(config)]).exit_code == 0  # the last layer's name is Keras's: only a built model tells
    result = runner.invoke(app, ["validate", "--build", str(config)])
    assert result.exit_code == 2 and "data.target.nope: the model has no output `nope`" in result.output
    assert "data.target.nope: the model has no output `nope`" in refused(runner, config, runs_dir)
