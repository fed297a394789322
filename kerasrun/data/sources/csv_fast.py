"""The fast path of `source: csv` in memory: a well-formed table parsed by `np.loadtxt`, or None to read it carefully.

The careful reader (`csv.read_csv_table`) tokenizes with the `csv` module and converts each field with `float()`:
4 million fields take seconds. Here NumPy's C parser does both. It is only trusted where it gives exactly what the
careful reader gives: NumPy parses numbers with the same correctly rounded routine as `float()` (then cast to
float32 as before) and splits fields and quotes as the `csv` module's default dialect does; wherever the two could
differ — something NumPy refuses (`1_000`, a ragged row, a missing value), a header the `csv` module would read
otherwise, a field past the `csv` module's size limit, a value of an int64 column that is not an integer — this returns None and
the careful reader reads the file again, raising its located errors unchanged. String and int64 columns
(`data.column_types`) are split by NumPy as text and converted by the careful reader's own rules.
"""

from __future__ import annotations

import codecs
import csv
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np

from kerasrun.config.csv_types import parse_int64
from kerasrun.config.data import CsvData
from kerasrun.data.arrays import Arrays, Split
from kerasrun.data.sources.base import Where
from kerasrun.errors import ConfigError

# Encodings in which byte 0x0A is "\n" and nothing else, and every character takes at least one byte: a line's
# length in bytes bounds its length in characters, so the longest line is found without decoding.
ASCII_LINES = {"ascii", "utf-8", "utf-8-sig", "latin-1", "iso8859-1", "cp1252", "iso8859-15"}


def read_fast(path: Path, spec: CsvData, where: Where, classes: dict[Any, list[str]] | None) -> tuple[Split, dict[Any, list[str]]] | None:
    """What `read_csv_table` returns for this file, parsed by NumPy; None wherever the careful reader must decide."""
    if spec.delimiter in '"\r\n':
        return None
    try:
        longest = scan(path, spec.encoding)
        # Opened as the careful reader opens it: bytes.decode would differ (UTF-16 without a byte-order mark).
        with path.open(newline="", encoding=spec.encoding) as f, path.open(newline="", encoding=spec.encoding) as peek:
            lines = csv.reader(f, delimiter=spec.delimiter)
            header = next(lines, None)
            ahead = csv.reader(peek, delimiter=spec.delimiter)
            next(ahead, None)
            first = next((row for row in ahead if row), None)  # the first data row: which columns hold numbers
            # A quoted header over several lines, NUL characters, a field longer than the csv module takes:
            # the careful reader's to read or refuse.
            if header is None or lines.line_num != 1 or longest is None or longest > csv.field_size_limit():
                return None
            return from_table(f, path, spec, where, classes, header, first)
    except (OSError, UnicodeError, LookupError, csv.Error):
        return None


def from_table(
    f: TextIO, path: Path, spec: CsvData, where: Where, classes: dict[Any, list[str]] | None, header: list[str], first: list[str] | None
) -> tuple[Split, dict[Any, list[str]]] | None:
    """read_fast's answer from the rows left in `f` (the header read); None where the careful reader must decide."""
    # Imported here: csv.py imports this module.
    from kerasrun.data.sources.csv import MAX_COLUMNS, choose_columns, column_values, input_type, typed_columns

    if first is None or len(first) != len(header):
        return None
    if len(header) > MAX_COLUMNS or any(n > 1 for n in Counter(header).values()):
        return None
    training = classes is None
    try:
        targets, features = choose_columns(path, header, spec, where, training)
    except ConfigError:
        return None  # a missing column: the careful reader reports it after any problem it finds first
    index = {name: i for i, name in enumerate(header)}
    typed = typed_columns(spec, targets, features, spec.sample_weight if training else None)
    numeric = {index[c] for c, kind in typed.items() if kind == "float32"}
    as_text = {index[c] for c, kind in typed.items() if kind != "float32"}  # string and int64 columns: converted below
    text_targets = {index[c] for c in targets.values() if c not in typed}
    if numeric & text_targets:
        return None
    # An untyped target or an unused column is parsed as numbers when its first value is one (the usual all-numeric
    # table, one plain 2-D parse); otherwise as text, for the careful reader's own label logic.
    kinds = ["f8" if j in numeric or (j not in as_text and is_number(first[j])) else "O" for j in range(len(header))]
    if not all(is_number(first[j]) for j in numeric):
        return None  # a bad first row: no need to parse the rest before the careful reader locates it
    parsed_table = parse(f, spec.delimiter, kinds)
    if parsed_table is None:
        return None
    table, columns = parsed_table
    if not len(columns[0]):
        return None
    if any(kind == "O" and max(map(len, cast(list, column))) > csv.field_size_limit() for kind, column in zip(kinds, columns, strict=True)):
        return None  # a quoted field over several lines, longer than the csv module accepts

    x: dict[Any, np.ndarray] = {}
    for group, chosen in features.items():
        kind = input_type(spec, chosen)
        positions = [index[c] for c in chosen]
        array = features_of(table, columns, positions) if kind == "float32" else typed_of(columns, positions, kind)
        if array is None:
            return None  # a value that is not an integer: the careful reader's located error
        x[group] = array
    y: dict[Any, np.ndarray] = {}
    found: dict[Any, list[str]] = {}
    for group, column in targets.items():
        known = (classes or {}).get(group)
        declared = spec.column_types.get(column)
        parsed = columns[index[column]]
        names: list[str] | None
        if declared == "int64":
            integers = typed_of(columns, [index[column]], "int64")
            if integers is None:
                return None  # not an integer: the careful reader's located error
            values, names = integers.reshape(-1), None
        elif declared == "float32":
            values, names = cast(np.ndarray, parsed).astype(np.float32), None
        elif isinstance(parsed, np.ndarray):  # numbers: what column_values makes of them
            values, names = parsed.astype(np.float32), None
            if np.all(values == np.round(values)):
                values = values.astype(np.int64)
        else:
            values, names = column_values(parsed, known, text=declared == "string")
            if any(not name.strip() for name in names or []):
                return None  # an empty label: the careful reader's located error
        if names is not None and classes is not None and known is None:
            return None  # text labels where training has numbers: the careful reader's error
        if set(names or []) - set(known or names or []):
            return None  # labels the training file lacks: likewise
        y[group] = values
        if names is not None:
            found[group] = names
    weights = None
    if spec.sample_weight and training:
        weights = cast(np.ndarray, columns[index[spec.sample_weight]]).astype(np.float32)
    return Split(cast(Arrays, x.get(None, x)), cast(Arrays, y.get(None, y)), weights), found


def parse(f: TextIO, delimiter: str, kinds: list[str]) -> tuple[np.ndarray | None, list[np.ndarray | list[str]]] | None:
    """The rows left in `f` as (2-D float64 table if every kind is "f8", columns: float64 or text); None if refused."""
    options: dict[str, Any] = {"delimiter": delimiter, "comments": None, "quotechar": '"'}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": declined below
            if all(kind == "f8" for kind in kinds):
                table = np.loadtxt(f, dtype=np.float64, ndmin=2, **options)
                if table.shape[1] != len(kinds):
                    return None
                return table, list(table.T)
            names = [f"c{j}" for j in range(len(kinds))]
            records = np.loadtxt(f, dtype=list(zip(names, kinds, strict=True)), ndmin=1, **options)
    except (ValueError, TypeError, OverflowError):  # UnicodeDecodeError is a ValueError
        return None
    return None, [records[n] if kind == "f8" else cast(list[str], records[n].tolist()) for n, kind in zip(names, kinds, strict=True)]


def features_of(table: np.ndarray | None, columns: list[np.ndarray | list[str]], chosen: list[int]) -> np.ndarray:
    """The chosen columns side by side as a C-ordered float32 matrix, as the careful reader's np.array of rows."""
    # float64 → float32 rounds as np.array(floats, dtype=np.float32) does.
    if table is not None and chosen and chosen == list(range(chosen[0], chosen[0] + len(chosen))):
        return table[:, chosen[0] : chosen[0] + len(chosen)].astype(np.float32)  # one pass, no gathered copy
    out = np.empty((len(columns[0]), len(chosen)), dtype=np.float32)
    for j, column in enumerate(chosen):
        out[:, j] = columns[column]
    return out


def typed_of(columns: list[np.ndarray | list[str]], chosen: list[int], kind: str) -> np.ndarray | None:
    """The chosen text columns side by side as the careful reader's `read_group` gives them; None at a value that is not an integer."""
    texts = [cast(list[str], columns[j]) for j in chosen]
    rows = len(texts[0]) if texts else len(columns[0])
    if kind == "string":
        return np.array([[value.encode("utf-8") for value in row] for row in zip(*texts, strict=True)], dtype=object).reshape(
            rows, len(chosen)
        )
    numbers = [[parse_int64(value) for value in row] for row in zip(*texts, strict=True)]
    if any(n is None for row in numbers for n in row):
        return None
    return np.array(numbers, dtype=np.int64).reshape(rows, len(chosen))


def is_number(value: str) -> bool:
    """Whether float() reads `value`."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def scan(path: Path, encoding: str) -> int | None:
    """An upper bound of the longest line's length in characters, or None if the text holds a NUL character."""
    if codecs.lookup(encoding).name in ASCII_LINES:  # counted in the bytes: no second decoding of the file
        data = path.read_bytes()
        if b"\0" in data:
            return None
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        return int(np.diff(np.concatenate(([-1], ends, [len(data)]))).max())
    with path.open(newline="", encoding=encoding) as f:
        text = f.read()
    return None if "\0" in text else max(map(len, text.split("\n")))
