"""Hostile data files — FIFOs, links to /dev/zero, link loops, foreign encodings, lying TFRecord lengths, truncated datasets —
end as located exit-2 errors naming the file, never a segfault, a hang or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_hostile import DATA_CASES, csv_case, encoded, text_case
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.data.sources.csv import MAX_COLUMNS

# Each case: the exit code and what the message must say (the file, and why).
EXPECTED: dict[str, tuple[int, list[str]]] = {
    "image-dev-zero": (2, ["not regular files", "zero.png (a device)"]),
    "image-dev-zero-streamed": (2, ["not regular files", "zero.png (a device)"]),
    "image-fifo": (2, ["not regular files", "x.png (a FIFO"]),
    "image-fifo-streamed": (2, ["not regular files", "x.png (a FIFO"]),
    "image-class-symlink-loop": (2, ["cannot be opened", "c (Too many levels of symbolic links)"]),
    "image-symlink-loop-below-class": (0, []),  # a link to a folder inside a class is not followed, as Keras does not
    "text-dev-zero": (2, ["zero.txt (a device)"]),
    "text-fifo": (2, ["x.txt (a FIFO"]),
    "text-class-symlink-loop": (2, ["c (Too many levels of symbolic links)"]),
    "text-latin-1": (2, ["1 of 9 texts", "are not utf-8 text", "odd.txt (byte 3)", "data.encoding"]),
    "text-utf-16": (2, ["are not utf-8 text", "odd.txt (byte 0)"]),
    "text-invalid-utf-8": (2, ["are not utf-8 text", "odd.txt (byte 3)"]),
    "csv-streamed-nan-sample-weight": (2, ["data.sample_weight", "w.csv: data row 6 holds NaN or inf in column `w`"]),
    "tfrecord-huge-record-length": (2, ["huge.tfrecord: record 5", "says it holds 1,152,921,504,606,846,976 bytes"]),
    "tfrecord-not-example": (2, ["data.files", "cannot read junk.tfrecord: its records are not tf.train.Example protos"]),
    "keras-truncated-npz": (2, ["cannot read mnist.npz"]),
    "keras-truncated-gzip": (2, ["train-images-idx3-ubyte.gz", "not a complete gzip file"]),
    "keras-truncated-idx": (2, ["train-images-idx3-ubyte.gz", "cut off"]),
}
CASES = {name: build for name, build in DATA_CASES.items() if not name.startswith("csv-wide")}
# The corpus's CSV header has 10 M columns (100 MB); one column over the limit shows the same refusal at 1/50 of the bytes.
CASES["csv-wide-header"] = csv_case(MAX_COLUMNS + 1, streamed=False)
CASES["csv-wide-header-streamed"] = csv_case(MAX_COLUMNS + 1, streamed=True)
EXPECTED["csv-wide-header"] = EXPECTED["csv-wide-header-streamed"] = (
    2,
    [f"has {MAX_COLUMNS + 1:,} columns (limit: {MAX_COLUMNS:,} columns)"],
)


def test_every_case_has_an_expectation() -> None:
    assert set(CASES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_data_ends_cleanly(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: None) -> None:
    monkeypatch.chdir(tmp_path)
    args = CASES[name](tmp_path)
    result = CliRunner().invoke(app, args)
    code, needles = EXPECTED[name]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "function_node" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr
    if code == 0 and args[0] == "data":
        assert json.loads(result.stdout)["train"]["rows"] == 8  # the looping link added no image
    if args[0] == "train":
        assert not list((tmp_path / "runs").glob("*")), "a refused config leaves no run folder"


def test_texts_in_a_stated_encoding_are_read_as_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: None) -> None:
    from kerasrun.config.load import load_config
    from kerasrun.data import load_data

    monkeypatch.chdir(tmp_path)
    args = text_case(encoded("café crème\n", "latin-1"))(tmp_path)
    config = Path(args[1])
    config.write_text(config.read_text().replace("source: text_folder", "source: text_folder\n  encoding: latin-1"))
    data = load_data(load_config(config))
    assert "café crème\n".encode() in list(data.train.x)  # TensorFlow's string ops take UTF-8


def test_an_unknown_text_encoding_is_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guard: None) -> None:
    monkeypatch.chdir(tmp_path)
    args = text_case(encoded("plain\n", "ascii"))(tmp_path)
    config = Path(args[1])
    config.write_text(config.read_text().replace("source: text_folder", "source: text_folder\n  encoding: klingon"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "data.encoding" in result.stderr and "unknown text encoding `klingon`" in result.stderr
