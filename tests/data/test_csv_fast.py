"""The NumPy fast path of an in-memory CSV gives the careful reader's arrays bit for bit, and its errors unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasrun.config.data import CsvData
from kerasrun.data.arrays import Split
from kerasrun.data.sources import csv as csv_source
from kerasrun.data.sources import csv_fast
from kerasrun.data.sources.base import Where
from kerasrun.errors import ConfigError, Problem


def where(folder: Path) -> Where:
    """A Where that locates problems at their data key and resolves paths in `folder`."""
    return Where(
        locate=lambda loc, message, hint: Problem(key=".".join(map(str, loc)), message=message, hint=hint),
        resolve_path=lambda p: folder / p,
        seed=0,
    )


def spec(**data: Any) -> CsvData:
    """A CSV data section reading t.csv."""
    return CsvData(**{"source": "csv", "path": "t.csv", "target": "label", **data})


def careful(path: Path, data: CsvData, classes: dict[Any, list[str]] | None = None) -> tuple[Split, dict[Any, list[str]]]:
    """The careful reader alone (the fast path switched off)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_source, "read_fast", lambda *args: None)
        return csv_source.read_csv_table(path, data, where(path.parent), ("path",), classes)


def fast(path: Path, data: CsvData, classes: dict[Any, list[str]] | None = None) -> tuple[Split, dict[Any, list[str]]]:
    """The fast path alone; the test fails if it declines the file."""
    out = csv_fast.read_fast(path, data, where(path.parent), classes)
    assert out is not None, "the fast path fell back to the careful reader"
    return out


def leaves(arrays: Any) -> list[np.ndarray]:
    """The arrays of an Arrays value (one array or {name: array}), in key order."""
    return [arrays[k] for k in sorted(arrays)] if isinstance(arrays, dict) else [arrays]


def assert_identical(a: tuple[Split, dict[Any, list[str]]], b: tuple[Split, dict[Any, list[str]]]) -> None:
    """Same arrays (dtype, shape, layout, bytes: NaN payloads included) and the same classes."""
    pairs = list(zip(leaves(a[0].x), leaves(b[0].x), strict=True)) + list(zip(leaves(a[0].y), leaves(b[0].y), strict=True))
    if a[0].sample_weight is not None or b[0].sample_weight is not None:
        pairs += list(zip(leaves(a[0].sample_weight), leaves(b[0].sample_weight), strict=True))
    for left, right in pairs:
        assert left.dtype == right.dtype and left.shape == right.shape
        assert left.flags.c_contiguous == right.flags.c_contiguous
        assert left.tobytes() == right.tobytes()
    assert a[1] == b[1]


def numbers(rng: np.random.Generator, rows: int) -> list[str]:
    """Numbers written in every way the reader accepts: integers, signs, exponents, NaN, infinities, spaces, quotes."""
    ints = [str(v) for v in rng.integers(-10_000, 10_000, rows)]
    floats = [repr(float(v)) for v in rng.normal(scale=1e3, size=rows)]
    forms = [
        lambda i: ints[i],
        lambda i: floats[i],
        lambda i: f"{float(floats[i]):.3e}",
        lambda i: f"{float(floats[i]):E}",
        lambda i: f'"{floats[i]}"',  # a quoted number: the csv module unquotes it
        lambda i: f" {ints[i]} ",  # float() ignores surrounding spaces
        lambda i: f"+{abs(int(ints[i]))}",
        lambda i: ".5" if i % 2 else "-7.",
        lambda i: ["nan", "-nan", "inf", "-Infinity", "1e39", "-0", "1e-50"][i % 7],
        lambda i: "0.1000000000000000055511151231257827",  # more digits than a double: rounded once
    ]
    return [forms[i % len(forms)](i) for i in range(rows)]


def write_table(path: Path, columns: dict[str, list[str]], newline: str = "\n", blank_every: int = 0) -> Path:
    """A CSV of the given columns (blank lines every `blank_every` rows when set)."""
    names = list(columns)
    lines = [",".join(names)]
    for i, row in enumerate(zip(*columns.values(), strict=True)):
        if blank_every and i % blank_every == 0:
            lines.append("")
        lines.append(",".join(row))
    path.write_text(newline.join(lines) + newline, newline="")
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_fast_path_gives_the_careful_arrays_on_numbers(tmp_path: Path, newline: str) -> None:
    rng = np.random.default_rng(0)
    columns = {f"f{j}": numbers(rng, 600) for j in range(5)}
    columns["w"] = [repr(float(v)) for v in rng.uniform(0.5, 2, 600)]
    columns["label"] = [str(v) for v in rng.integers(0, 10, 600)]  # whole numbers: int64 labels
    path = write_table(tmp_path / "t.csv", columns, newline, blank_every=97)
    for data in (spec(), spec(sample_weight="w"), spec(features={"a": ["f0", "f3"], "b": ["f4"]}, target={"out": "label"})):
        assert_identical(fast(path, data), careful(path, data))


def test_fast_path_gives_the_careful_arrays_on_text_and_typed_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    kinds = ["cat", "dog", '"a, quoted label"', "é", " spaced "]
    columns = {
        "f0": numbers(rng, 300),
        "note": [f'"free text {i}\nover two lines"' if i % 50 == 0 else "x" for i in range(300)],  # unused column
        "label": [kinds[i % len(kinds)] for i in range(300)],
        "y": [f"{v:.5f}" for v in rng.normal(size=300)],
        "k": [str(v) for v in rng.integers(-5, 5, 300)],
    }
    path = write_table(tmp_path / "t.csv", columns)
    for data in (
        spec(features=["f0"]),
        spec(features=["f0"], target="y"),
        spec(features=["f0"], target="k", column_types={"k": "int64"}),
        spec(features=["f0"], target="k", column_types={"k": "float32"}),
        spec(features=["f0"], target="k", column_types={"k": "string"}),
        spec(features={"x": ["f0", "y"]}, target={"cls": "label", "reg": "k"}),
    ):
        got, want = fast(path, data), careful(path, data)
        assert_identical(got, want)
    # A validation file numbers its labels by the training file's classes.
    classes = {None: ["cat", "dog", "é", " spaced ", "a, quoted label", "zebra"]}
    assert_identical(fast(path, spec(features=["f0"]), classes), careful(path, spec(features=["f0"]), classes))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("1,2,3\n1_0,2,3\n", "float() reads 1_0; NumPy refuses it"),
        ("1,2,3\n1,2\n", "a ragged row"),
        ("1,2,3\n \n", "a line of spaces is a row"),
        ("1,2,x\n1,2,3\n", "a text target: labels the careful reader numbers"),
    ],
)
def test_fast_path_declines_or_agrees(tmp_path: Path, body: str, why: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n" + body)
    got = csv_fast.read_fast(path, spec(), where(tmp_path), None)
    try:
        want = careful(path, spec())
    except ConfigError:
        assert got is None, why  # the careful reader's error, never a fast-path answer
        return
    if got is not None:
        assert_identical(got, want)


def test_a_bad_value_deep_in_a_large_file_keeps_its_located_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [",".join(f"{v:.4f}" for v in row) + f",{i % 3}" for i, row in enumerate(rng.normal(size=(30_000, 8)))]
    rows[28_500] = rows[28_500].replace(rows[28_500].split(",")[5], "1.2.3", 1)
    path = tmp_path / "t.csv"
    path.write_text(",".join(f"f{j}" for j in range(8)) + ",label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ConfigError) as info:
        csv_source.read_csv_table(path, spec(), where(tmp_path), ("path",))
    with pytest.raises(ConfigError) as unchanged:
        careful(path, spec())
    assert [p.message for p in info.value.problems] == ["t.csv line 28502, column `f5`: '1.2.3' is not a number"]
    assert info.value.problems == unchanged.value.problems
