"""CSV feature columns of type string and int64 (`data.column_types`): the same arrays from the careful, fast and streamed
readers; structured-data models (StringLookup, IntegerLookup, CategoryEncoding, Normalization) train to the same bytes in memory,
streamed and in plain Keras; and every type mistake is a located error with its exact message."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import merge, only_run, train
from test_csv_fast import where
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.data import CsvData
from kerasrun.config.load import load_config
from kerasrun.data import Stream, load_data
from kerasrun.data.sources import csv as csv_source
from kerasrun.data.sources import csv_fast
from kerasrun.data.sources.csv_stream import read_stream
from kerasrun.errors import ConfigError

THAL = ["normal", "fixed", "reversible"]
HEADER = "age,sex,cp,chol,oldpeak,thal,target"
FEATURES = {"num": ["age", "chol", "oldpeak"], "sex": ["sex"], "cp": ["cp"], "thal": ["thal"]}
TYPES = {"sex": "int64", "cp": "int64", "thal": "string"}

HEART: dict[str, Any] = {
    "name": "heart",
    "seed": 5,
    "data": {
        "source": "csv",
        "path": "heart.csv",
        "test_path": "test.csv",
        "target": "target",
        "features": FEATURES,
        "column_types": TYPES,
    },
    "model": {
        "inputs": {
            "num": [3],
            "sex": {"shape": [1], "dtype": "int64"},
            "cp": {"shape": [1], "dtype": "int64"},
            "thal": {"shape": [1], "dtype": "string"},
        },
        "layers": [
            # Explicit vocabularies and statistics: nothing here depends on what kerasrun adapts, or when.
            {"StringLookup": {"vocabulary": THAL, "output_mode": "one_hot", "name": "thal_hot"}, "inputs": "thal"},
            {"IntegerLookup": {"vocabulary": [0, 1], "output_mode": "one_hot", "name": "sex_hot"}, "inputs": "sex"},
            {"CategoryEncoding": {"num_tokens": 4, "output_mode": "one_hot", "name": "cp_hot"}, "inputs": "cp"},
            {"Normalization": {"mean": [54.0, 250.0, 1.0], "variance": [80.0, 2500.0, 1.2], "name": "scaled"}, "inputs": "num"},
            {"Concatenate": {"name": "all"}, "inputs": ["thal_hot", "sex_hot", "cp_hot", "scaled"]},
            {"Dense": {"units": 8, "activation": "relu"}},
            {"Dense": {"units": 1, "activation": "sigmoid"}},
        ],
    },
    "compile": {
        "optimizer": {"Adam": {"learning_rate": 0.01}},
        "loss": "binary_crossentropy",
        "metrics": ["accuracy"],
        "steps_per_execution": 1,
    },
    "train": {"epochs": 2, "batch_size": 16, "validation_split": 0.25, "shuffle": False},
}


def heart_rows(rows: int = 60, seed: int = 7) -> list[list[str]]:
    """Seeded rows of the keras.io heart table's kinds of columns: numbers, integer categories, a text category, a 0/1 target."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        cp, thal = int(rng.integers(0, 4)), THAL[int(rng.integers(0, 3))]
        target = int((cp > 1) != (thal == "reversible"))  # learnable from the categories
        age, chol, oldpeak = rng.integers(29, 78), rng.integers(126, 400), rng.uniform(0, 4)
        out.append([str(age), str(rng.integers(0, 2)), str(cp), str(chol), f"{oldpeak:.1f}", thal, str(target)])
    return out


def write_csv(path: Path, rows: list[list[str]], header: str = HEADER, encoding: str = "utf-8") -> Path:
    """A CSV of `rows` (fields written as given: quote them yourself)."""
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n", encoding=encoding)
    return path


def write(folder: Path, name: str, changes: dict[str, Any]) -> Path:
    """A config in `folder`: HEART with `changes` merged one level deep."""
    path = folder / name
    path.write_text(yaml.safe_dump(merge(HEART, changes), sort_keys=False))
    return path


def spec(**data: Any) -> CsvData:
    """A CSV data section reading heart.csv."""
    return CsvData(**{"source": "csv", "path": "heart.csv", "target": "target", "features": FEATURES, "column_types": TYPES, **data})


def three_readers(folder: Path, data: CsvData) -> list[dict[str, np.ndarray]]:
    """The training features as the careful reader, the fast path and the streamed reader give them."""
    path = folder / data.path
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_source, "read_fast", lambda *args: None)
        careful = csv_source.read_csv_table(path, data, where(folder), ("path",))[0].x
    fast = csv_fast.read_fast(path, data, where(folder), None)
    assert fast is not None, "the fast path fell back to the careful reader"
    stream = read_stream(data.model_copy(update={"stream": True}), where(folder)).train
    assert isinstance(stream, Stream)
    rows = [x for x, _ in stream.elements().as_numpy_iterator()]
    streamed = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    assert isinstance(careful, dict) and isinstance(fast[0].x, dict)
    return [careful, fast[0].x, streamed]


def assert_same_arrays(readers: list[dict[str, np.ndarray]]) -> None:
    """Same names, dtypes, shapes and values (bytes for numbers, the bytes objects themselves for text)."""
    first = readers[0]
    for other in readers[1:]:
        assert other.keys() == first.keys()
        for name, array in first.items():
            assert other[name].dtype == array.dtype and other[name].shape == array.shape, name
            if array.dtype == object:
                assert other[name].tolist() == array.tolist(), name
            else:
                assert other[name].tobytes() == array.tobytes(), name


def load_problems(config: Path) -> list[tuple[str, str, str | None]]:
    """(key, message, hint) of every problem loading the config's data raises."""
    with pytest.raises(ConfigError) as info:
        load_data(load_config(config))
    return [(p.key, p.message, p.hint) for p in info.value.problems]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding heart.csv (60 rows) and test.csv (20)."""
    root = tmp_path_factory.mktemp("heart")
    write_csv(root / "heart.csv", heart_rows())
    write_csv(root / "test.csv", heart_rows(20, seed=8))
    return root


@pytest.fixture(scope="module")
def in_memory_run(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HEART trained in memory (once for the module)."""
    runs = tmp_path_factory.mktemp("runs")
    result = train(CliRunner(), write(folder, "m.yaml", {}), runs)
    assert result.exit_code == 0, result.output
    return only_run(runs)


def test_every_reader_gives_the_same_typed_arrays(folder: Path, tmp_path: Path) -> None:
    readers = three_readers(folder, spec())
    assert_same_arrays(readers)
    x = readers[0]
    assert x["num"].dtype == np.float32 and x["num"].shape == (60, 3)
    assert x["sex"].dtype == np.int64 and x["cp"].shape == (60, 1) and set(x["cp"].ravel()) <= {0, 1, 2, 3}
    assert x["thal"].dtype == object and {v for (v,) in x["thal"]} == {t.encode() for t in THAL}
    # Text as the csv module reads it — quoted delimiters and quotes, spaces kept, empty fields, non-ASCII — and
    # integers as tf.io.decode_csv reads them (signs, spaces around, leading zeros, int64's ends).
    texts = ['"a, b"', '"say ""hi"""', " spaced ", "", "é", "naïve café", "normal"]
    integers = ["+3", " 4", "5 ", "-0", "007", "9223372036854775807", "-9223372036854775808"]
    rows = heart_rows(28)
    for i, row in enumerate(rows):
        row[5], row[2] = texts[i % len(texts)], integers[i % len(integers)]
    write_csv(tmp_path / "odd.csv", rows)
    readers = three_readers(tmp_path, spec(path="odd.csv", features={"cp": ["cp", "sex"], "thal": ["thal"], "num": ["chol"]}))
    assert_same_arrays(readers)
    assert readers[0]["thal"][:7, 0].tolist() == [b"a, b", b'say "hi"', b" spaced ", b"", "é".encode(), "naïve café".encode(), b"normal"]
    assert readers[0]["cp"][:7, 0].tolist() == [3, 4, 5, 0, 7, 2**63 - 1, -(2**63)]
    # One string input of several text columns; latin-1 text arrives as UTF-8, as a string tensor holds it.
    rows = heart_rows(20)
    for i, row in enumerate(rows):
        row[5] = ["café", "thé", "eau"][i % 3]
    write_csv(tmp_path / "latin.csv", rows, encoding="latin-1")
    two_texts = {"thal": "string", "age": "string"}
    readers = three_readers(tmp_path, spec(path="latin.csv", encoding="latin-1", features={"t": ["thal", "age"]}, column_types=two_texts))
    assert_same_arrays(readers)
    assert readers[0]["t"].shape == (20, 2) and readers[0]["t"][0].tolist() == ["café".encode(), rows[0][0].encode()]
    # CRLF line ends after a text column, and empty fields in a column nothing reads (the stream reads it as text).
    rows = [[*row[:5], "" if i % 3 == 0 else row[0], row[5]] for i, row in enumerate(heart_rows(20))]
    text = "\r\n".join(["age,sex,cp,chol,oldpeak,unused,thal", *(",".join(row) for row in rows)]) + "\r\n"
    (tmp_path / "crlf.csv").write_text(text, newline="")
    readers = three_readers(tmp_path, spec(path="crlf.csv", target="sex", features={"thal": ["thal"], "cp": ["cp"]}, column_types=TYPES))
    assert_same_arrays(readers)
    assert readers[0]["thal"][:, 0].tolist() == [row[6].encode() for row in rows]


def test_in_memory_streamed_and_both_loops_train_the_same(folder: Path, in_memory_run: Path, runner: CliRunner, tmp_path: Path) -> None:
    history = (in_memory_run / "history.json").read_bytes()
    assert len(set(json.loads(history)["loss"])) == 2
    streamed = train(runner, write(folder, "s.yaml", {"data": {"stream": True}}), tmp_path / "s")
    assert streamed.exit_code == 0, streamed.output
    assert (only_run(tmp_path / "s") / "history.json").read_bytes() == history
    custom = train(runner, write(folder, "m.yaml", {}), tmp_path / "c", "--set", "train.loop=custom")
    assert custom.exit_code == 0, custom.output
    assert (only_run(tmp_path / "c") / "history.json").read_bytes() == history
    assert (only_run(tmp_path / "s") / "metrics.json").read_bytes() == (in_memory_run / "metrics.json").read_bytes()  # test.csv
    evaluated = runner.invoke(app, ["evaluate", str(in_memory_run)])  # the saved model takes the typed inputs back
    assert evaluated.exit_code == 0, evaluated.output


def test_equals_plain_keras_reading_the_csv_itself(folder: Path, in_memory_run: Path) -> None:
    from kerasrun._tf import keras, tf

    ours = json.loads((in_memory_run / "history.json").read_text())
    ours.pop("epoch")
    with (folder / "heart.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    x = {
        "num": tf.constant([[float(r[c]) for c in FEATURES["num"]] for r in table], tf.float32),
        "sex": tf.constant([[int(r["sex"])] for r in table], tf.int64),
        "cp": tf.constant([[int(r["cp"])] for r in table], tf.int64),
        "thal": tf.constant([[r["thal"]] for r in table]),
    }
    y = np.array([int(r["target"]) for r in table], dtype=np.int64)
    keras.utils.set_random_seed(5)
    inputs = {
        "num": keras.Input((3,), name="num"),
        "sex": keras.Input((1,), dtype="int64", name="sex"),
        "cp": keras.Input((1,), dtype="int64", name="cp"),
        "thal": keras.Input((1,), dtype="string", name="thal"),
    }
    thal = keras.layers.StringLookup(vocabulary=THAL, output_mode="one_hot", name="thal_hot")(inputs["thal"])
    sex = keras.layers.IntegerLookup(vocabulary=[0, 1], output_mode="one_hot", name="sex_hot")(inputs["sex"])
    cp = keras.layers.CategoryEncoding(num_tokens=4, output_mode="one_hot", name="cp_hot")(inputs["cp"])
    scaled = keras.layers.Normalization(mean=[54.0, 250.0, 1.0], variance=[80.0, 2500.0, 1.2], name="scaled")(inputs["num"])
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate(name="all")([thal, sex, cp, scaled]))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    theirs = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, validation_split=0.25, verbose=0).history
    assert ours == {key: [float(v) for v in values] for key, values in theirs.items()}


BAD_CONFIGS = [
    (
        {"data": {"features": ["age", "thal"], "column_types": {"thal": "string"}}, "model": {"inputs": {"x": [2]}}},
        "data.features: column `thal` is string, but the other columns of the features are float32 (age): an input's columns share one type",
        "give `thal` an input of its own: features: {…, thal: [thal]} with model.inputs.thal: {shape: [1], dtype: string}",
    ),
    (
        {"data": {"features": {**FEATURES, "num": ["age", "sex", "chol"]}}},
        "data.features.num: column `sex` is int64, but the other columns of input `num` are float32 (age, chol): "
        "an input's columns share one type",
        "give `sex` an input of its own",
    ),
    (
        {"data": {"column_types": {"sex": "int64", "cp": "int64"}}},
        "data.features.thal: model input `thal` takes string, but its column `thal` is read as float32",
        "declare data.column_types: {thal: string}, or the input `dtype: float32`",
    ),
    (
        {"model": {"inputs": {**HEART["model"]["inputs"], "thal": [1]}}},
        "data.features.thal: model input `thal` takes float32, but its column `thal` is declared as string",
        "declare data.column_types: {thal: float32}, or the input `dtype: string`",
    ),
    (
        {"model": {"inputs": {**HEART["model"]["inputs"], "sex": [1]}}},
        "data.features.sex: model input `sex` takes float32, but its column `sex` is declared as int64",
        None,
    ),
    (
        {"model": {"inputs": {**HEART["model"]["inputs"], "thal": {"shape": [], "dtype": "string"}}}},
        "model.inputs.thal: model input `thal` has per-sample shape [], but data.features.thal gives it 1 column",
        "shape: [1]",
    ),
    (
        {"data": {"column_types": {**TYPES, "thall": "string"}}},
        "data.column_types.thall: `thall` is neither a target nor a feature column",
        "did you mean `thal`?",
    ),
    (
        {"data": {"features": ["thal"], "column_types": {"thal": "string"}, "preprocess": [{"scale": 2}]}, "model": {"inputs": {"x": [1]}}},
        "data.preprocess[0].scale: scale applies to numbers, but the features are text (column `thal` is string)",
        None,
    ),
    (
        {
            "data": {"features": ["age"], "column_types": {}, "preprocess": [{"cast": "int64"}]},
            "model": {"inputs": {"x": {"shape": [1], "dtype": "string"}}},
        },
        "data.features: model input `x` takes string, but its column `age` is read as float32 and cast to int64 by data.preprocess",
        None,
    ),
    (
        {
            "data": {
                "sample_weight": "chol",
                "features": {**FEATURES, "num": ["age", "oldpeak"]},
                "column_types": {**TYPES, "chol": "int64"},
            }
        },
        "data.column_types.chol: `chol` is the sample_weight column: weights are always float32",
        None,
    ),
]


@pytest.mark.parametrize(
    ("changes", "message", "hint"), BAD_CONFIGS, ids=[m.split(":")[0] + f"-{i}" for i, (_, m, _) in enumerate(BAD_CONFIGS)]
)
def test_validate_refuses_column_types_the_inputs_cannot_take(
    folder: Path, runner: CliRunner, changes: dict[str, Any], message: str, hint: str | None
) -> None:
    result = runner.invoke(app, ["validate", str(write(folder, "v.yaml", changes))])
    assert result.exit_code == 2, result.output
    assert message in result.output and (hint is None or hint in result.output), result.output
    assert "Traceback" not in result.output


def test_a_cast_to_the_inputs_dtype_and_a_float_feature_list_still_validate(folder: Path, runner: CliRunner) -> None:
    cast = {"data": {"features": ["sex", "cp"], "column_types": {}, "preprocess": [{"cast": "int64"}]}}
    cast["model"] = {"inputs": {"x": {"shape": [2], "dtype": "int64"}}, "layers": [{"Dense": {"units": 1, "activation": "sigmoid"}}]}
    plain = {"data": {"features": ["age", "chol"], "column_types": {}}, "model": {"inputs": {"x": [2]}, "layers": cast["model"]["layers"]}}
    for changes in (cast, plain):
        result = runner.invoke(app, ["validate", str(write(folder, "ok.yaml", changes))])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_data_type_mistakes_are_located_alike_by_both_readers(tmp_path: Path, stream: bool) -> None:
    rows = heart_rows()
    rows[0][5] = "normal"
    write_csv(tmp_path / "heart.csv", rows)
    # A text column nobody declared, fed to a float input: validate can't tell, the reader says how to declare it.
    undeclared = {"data": {"features": ["age", "thal"], "column_types": {}, "stream": stream}, "model": {"inputs": {"x": [2]}}}
    assert load_problems(write(tmp_path, "a.yaml", undeclared)) == [
        (
            "data.features",
            "heart.csv line 2, column `thal`: 'normal' is not a number",
            "to read `thal` as text, declare data.column_types: {thal: string}",
        )
    ]
    # Every column but the target is a feature: the reader finds the string column beside the float ones.
    default = {"data": {"features": None, "column_types": {"thal": "string"}, "stream": stream}, "model": {"inputs": {"x": [6]}}}
    assert load_problems(write(tmp_path, "b.yaml", default)) == [
        (
            "data.column_types.thal",
            "column `thal` is string, but the other columns of the features (every column but the target) are float32 "
            "(age, sex, cp, chol, oldpeak): an input's columns share one type",
            "give `thal` an input of its own: features: {…, thal: [thal]} with model.inputs.thal: {shape: [1], dtype: string}",
        )
    ]
    missing = {"data": {"features": None, "column_types": {"thal": "string", "tahl": "int64"}, "stream": stream}}
    assert load_problems(write(tmp_path, "c.yaml", missing))[0][:2] == ("data.column_types.tahl", "heart.csv has no column `tahl`")
    # An int64 column holding a value that is not an integer, after the first thousand rows (where only tf.data reads a stream).
    for value in ("1.5", "3.0", "1e3", "1_000", "9223372036854775808", "- 3", "٣"):
        long = heart_rows(1200)
        long[1100][1] = value
        write_csv(tmp_path / "heart.csv", long)
        assert load_problems(write(tmp_path, "d.yaml", {"data": {"stream": stream}})) == [
            ("data.column_types.sex", f"heart.csv line 1102, column `sex`: {value!r} is not an integer", None)
        ]
    long[1100][1] = ""
    write_csv(tmp_path / "heart.csv", long)
    assert load_problems(write(tmp_path, "e.yaml", {"data": {"stream": stream}})) == [
        ("data.column_types.sex", "heart.csv line 1102, column `sex`: '' is missing", None)
    ]


def test_a_streamed_text_column_that_does_not_decode_is_refused(tmp_path: Path, runner: CliRunner) -> None:
    rows = heart_rows(1600)  # the head the stream checks in Python is 1,000 rows and what the decoder read ahead: 8 KiB
    rows[-1][5] = "fixed"
    path = write_csv(tmp_path / "heart.csv", rows)
    raw = path.read_bytes()
    at = raw.rindex(b"fixed")  # the last one: a row only tf.data reads when streamed
    path.write_bytes(raw[:at] + b"fix\xffd" + raw[at + 5 :])
    streamed = "heart.csv: data row 1600, column `thal` is not utf-8 text (byte 3 of the value)"
    for stream, expected in ((True, streamed), (False, f"heart.csv is not utf-8 text (byte {at + 3})")):
        result = train(runner, write(tmp_path, f"{stream}.yaml", {"data": {"stream": stream}}), tmp_path / "runs")
        assert result.exit_code == 2 and expected in result.output, result.output
        assert "set data.encoding" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_data_command_lists_each_typed_input(folder: Path, runner: CliRunner, stream: bool) -> None:
    result = runner.invoke(app, ["data", str(write(folder, "d.yaml", {"data": {"stream": stream}})), "--seconds", "0"])
    assert result.exit_code == 0, result.output
    shown = ["x[num] (45, 3) float32", "x[sex] (45, 1) int64", "x[thal] (45, 1) object"]
    for line in ["0/num: (3,) float32", "0/sex: (1,) int64", "0/thal: (1,) string"] if stream else shown:
        assert line in result.output, result.output


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('a"b', "a field that is not quoted holds a quote"),
        ('"a"b"', "a quote inside a quoted field must be doubled"),
    ],
)
def test_quotes_the_stream_cannot_read_are_located(tmp_path: Path, text: str, why: str) -> None:
    rows = heart_rows(20)
    rows[4][5] = text  # the csv module (in memory) reads it; tf.io.decode_csv refuses it
    write_csv(tmp_path / "heart.csv", rows)
    write_csv(tmp_path / "test.csv", heart_rows(5))
    problems = load_problems(write(tmp_path, "q.yaml", {"data": {"stream": True}}))
    assert [(key, message) for key, message, _ in problems] == [("data.path", f"heart.csv line 6, column `thal`: {why}")]
    in_memory = load_data(load_config(write(tmp_path, "m.yaml", {}))).train.x
    assert isinstance(in_memory, dict) and in_memory["thal"][4, 0] == next(csv.reader([text]))[0].encode()
