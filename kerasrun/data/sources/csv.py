"""`source: csv`: a CSV table read into memory, with a test file or a seeded test fraction."""

from __future__ import annotations

import codecs
import csv
import itertools
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from kerasrun.config.csv_types import column_types_problems, feature_type, group_type, mixed_group_problems, parse_int64, value_problem
from kerasrun.config.data import CsvData
from kerasrun.data.arrays import Arrays, Data, Split
from kerasrun.data.sources.base import Where, split_test
from kerasrun.data.sources.csv_fast import read_fast
from kerasrun.errors import ConfigError, Problem
from kerasrun.imports import suggest

MAX_COLUMNS = 100_000  # a feature per column; a wider "header" is data on one line (or a file that is not a CSV)


def read_csv_table(
    path: Path, spec: CsvData, where: Where, loc: tuple[Any, ...], classes: dict[Any, list[str]] | None = None
) -> tuple[Split, dict[Any, list[str]]]:
    """Feature columns and target column(s) of a CSV file; {name: columns} / {name: column} for several inputs/outputs.

    Also returns the classes of each text target: a validation or test file's text labels are numbered
    by the training file's classes (`classes`), never by its own. A well-formed file is parsed by NumPy
    (`csv_fast`); anything else, and every error, by the careful reader below.
    """
    fast = read_fast(path, spec, where, classes)
    if fast is not None:
        return fast
    rows = read_rows(path, spec, where, loc)
    header = rows[0]
    numbered = [(number, row) for number, row in enumerate(rows[1:], start=2) if row]  # (line, row); blank lines are no rows
    body = [row for _, row in numbered]
    training = classes is None  # the training file; validation and test files are numbered by its classes
    targets, features = choose_columns(path, header, spec, where, training)
    index = {name: i for i, name in enumerate(header)}
    weight = spec.sample_weight if training else None
    try:
        split, found = typed_split(body, index, targets, features, weight, spec, where, path, loc, classes)
    except ValueError:  # a value that is not of its column's type: found again, row by row, to say where
        raise ConfigError(first_bad_value(path, header, numbered, typed_columns(spec, targets, features, weight), spec, where)) from None
    for group, names in found.items():
        if any(not name.strip() for name in names):  # an empty cell would be a class of its own ('' sorts first, shifting every label)
            column = targets[group]
            number = next(number for number, row in numbered if not row[index[column]].strip())
            raise ConfigError(missing_label(path.name, f"line {number}", column, where))
    return split, found


def missing_label(filename: str, row: str, column: str, where: Where) -> Problem:
    """An empty target cell: refused like an empty weight, not read as a class named ''."""
    return where.problem(
        ("target",), f"{filename} {row}, column `{column}`: the label is missing", "give every row a label, or drop the rows without one"
    )


def typed_split(
    body: list[list[str]],
    index: dict[str, int],
    targets: dict[Any, str],
    features: dict[Any, list[str]],
    weight: str | None,
    spec: CsvData,
    where: Where,
    path: Path,
    loc: tuple[Any, ...],
    classes: dict[Any, list[str]] | None,
) -> tuple[Split, dict[Any, list[str]]]:
    """The rows as a Split of typed arrays, and the classes of each text target; ValueError at a value not of its column's type."""
    x = {group: read_group(body, [index[c] for c in columns], input_type(spec, columns)) for group, columns in features.items()}
    y: dict[Any, np.ndarray] = {}
    found: dict[Any, list[str]] = {}
    for group, column in targets.items():
        known = (classes or {}).get(group)
        declared = spec.column_types.get(column)
        if declared in ("float32", "int64"):
            values, names = read_group(body, [index[column]], declared).reshape(-1), None
        else:
            values, names = column_values([row[index[column]] for row in body], known, text=declared == "string")
        if names is not None and classes is not None and known is None:
            raise ConfigError(
                where.problem(loc, f"{path.name}: column `{column}` holds text labels; in the training file it holds numbers")
            )
        unknown = sorted(set(names or []) - set(known or names or []))
        if unknown:
            raise ConfigError(where.problem(loc, f"{path.name} has labels the training file has not: {unknown[:10]}"))
        y[group] = values
        if names is not None:
            found[group] = names
    weights = read_group(body, [index[weight]], "float32").reshape(-1) if weight else None
    # The None key is the single unnamed group: unwrap it; otherwise every key is a name.
    return Split(cast(Arrays, x.get(None, x)), cast(Arrays, y.get(None, y)), weights), found


def read_rows(path: Path, spec: CsvData, where: Where, loc: tuple[Any, ...], limit: int | None = None) -> list[list[str]]:
    """The header and the rows (the first `limit` of them) of a CSV file, checked: decodable, not empty, distinct
    column names, as many fields in every row as in the header — each failure a located problem."""
    if not path.is_file():
        raise ConfigError(where.problem(loc, f"no such file: {path}"))
    try:
        with path.open(newline="", encoding=spec.encoding) as f:
            rows = list(itertools.islice(csv.reader(f, delimiter=spec.delimiter), None if limit is None else limit + 1))
    except UnicodeDecodeError as exc:  # its position is in the chunk the text reader decoded, not in the file
        at = first_bad_byte(path, spec.encoding)
        raise ConfigError(
            where.problem(loc, f"{path.name} is not {spec.encoding} text (byte {exc.start if at is None else at})", encoding_hint(path))
        ) from None
    except UnicodeError as exc:  # e.g. the utf-16 codec on a file without a byte-order mark
        raise ConfigError(where.problem(loc, f"{path.name} is not {spec.encoding} text: {exc}", encoding_hint(path))) from None
    except LookupError:
        raise ConfigError(where.problem(("encoding",), f"unknown text encoding `{spec.encoding}`", "e.g. utf-8, latin-1, cp1252")) from None
    except (OSError, csv.Error) as exc:
        raise ConfigError(where.problem(loc, f"cannot read {path.name}: {exc}")) from None
    if not rows:
        raise ConfigError(where.problem(loc, f"{path.name} is empty"))
    if any("\0" in field for field in rows[0]):  # UTF-16 text read as 8-bit text: every other byte is NUL
        raise ConfigError(where.problem(loc, f"{path.name} holds NUL characters: it is not {spec.encoding} text", encoding_hint(path)))
    problems = check_csv_shape(path, rows[0], rows, where, loc)
    if not problems and not any(rows[1:]):
        problems.append(where.problem(loc, f"{path.name} has a header but no rows"))
    if problems:
        raise ConfigError(problems)
    return rows


def first_bad_byte(path: Path, encoding: str) -> int | None:
    """The offset in the file of the first byte that does not decode from `encoding`, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            pending = len(decoder.getstate()[0])  # the bytes of a character the last chunk began
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return offset - pending + exc.start
            offset += len(chunk)
    return None


def encoding_hint(path: Path) -> str:
    """What to set data.encoding to, guessed from the file's first bytes (UTF-16 shows as NUL bytes beside ASCII)."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "it starts with a UTF-16 byte-order mark: set data.encoding: utf-16"
    if head[1:2] == b"\0" and head[:1] != b"\0":
        return "it looks like UTF-16 text without a byte-order mark: set data.encoding: utf-16-le"
    if head[:1] == b"\0" and head[1:2] != b"\0":
        return "it looks like UTF-16 text without a byte-order mark: set data.encoding: utf-16-be"
    return "set data.encoding, e.g. encoding: latin-1"


def choose_columns(
    path: Path, header: list[str], spec: CsvData, where: Where, training: bool = True
) -> tuple[dict[Any, str], dict[Any, list[str]]]:
    """{group: target column} and {group: feature columns} (group None when unnamed); every missing column at once.

    The sample_weight column is never a feature; only the training file must have it.
    """
    targets = spec.target if isinstance(spec.target, dict) else {None: spec.target}
    weight = [spec.sample_weight] if spec.sample_weight else []
    features = (
        spec.features
        if isinstance(spec.features, dict)
        else {None: spec.features or [c for c in header if c not in targets.values() and c not in weight]}
    )
    if (other := other_delimiter(header, spec.delimiter)) is not None and any(c not in header for c in targets.values()):
        # Every named column would be missing: one problem says why.
        raise ConfigError(
            where.problem(
                ("path",),
                f"{path.name}'s header is one column, `{header[0][:60]}`: its columns are not separated by {spec.delimiter!r}",
                f"set data.delimiter: {other!r}",
            )
        )
    problems = [
        where.problem(
            (key,) + ((group,) if group else ()),
            f"{path.name} has no column `{name}`",
            suggest(name, header) or f"columns: {shown_columns(header)}",
        )
        for key, groups in (
            ("target", {g: [c] for g, c in targets.items()}),
            ("features", features),
            ("sample_weight", {None: weight if training else []}),
        )
        for group, names in groups.items()
        for name in names
        if name not in header
    ]
    listed = [c for columns in features.values() for c in columns]
    problems += column_types_problems(
        spec.column_types, list(targets.values()), listed, spec.sample_weight, where.problem, header, path.name
    )
    if not problems:
        problems += mixed_group_problems(features, spec.column_types, where.problem, default=not spec.features)
    if problems:
        raise ConfigError(problems)
    return targets, features


def input_type(spec: CsvData, columns: list[str]) -> str:
    """The column type of an input's columns (choose_columns has refused inputs that mix types)."""
    return group_type(spec.column_types, columns) or "float32"


def typed_columns(spec: CsvData, targets: dict[Any, str], features: dict[Any, list[str]], weight: str | None) -> dict[str, str]:
    """{column: type} of every column read as typed values: the features, the targets declared in column_types, the weight."""
    types = {c: feature_type(spec.column_types, c) for columns in features.values() for c in columns}
    types |= {c: spec.column_types[c] for c in targets.values() if c in spec.column_types}
    return types | ({weight: "float32"} if weight else {})


def read_group(body: list[list[str]], positions: list[int], kind: str) -> np.ndarray:
    """The fields at `positions` of every row as a (rows, columns) array of column type `kind`; ValueError at a value that is none."""
    if kind == "string":  # UTF-8 bytes objects, as TensorFlow's string tensors hold them (and the streamed reader gives)
        texts = [[row[i].encode("utf-8") for i in positions] for row in body]
        return np.array(texts, dtype=object).reshape(len(body), len(positions))
    if kind == "int64":
        numbers = [[parse_int64(row[i]) for i in positions] for row in body]
        if any(n is None for values in numbers for n in values):
            raise ValueError("not an integer")
        return np.array(numbers, dtype=np.int64).reshape(len(body), len(positions))
    return np.array([[float(row[i]) for i in positions] for row in body], dtype=np.float32).reshape(len(body), len(positions))


def other_delimiter(header: list[str], delimiter: str) -> str | None:
    """The common delimiter a one-column header holds (`;` of a European CSV read with `,`), or None."""
    if len(header) != 1:
        return None
    return next((d for d in (";", "\t", "|", ",") if d != delimiter and d in header[0]), None)


def shown_columns(header: list[str], count: int = 20) -> str:
    """The first `count` column names, for a hint (a wide file's header is not printed whole)."""
    return ", ".join(header[:count]) + (f", … ({len(header)} columns)" if len(header) > count else "")


def check_csv_shape(path: Path, header: list[str], rows: list[list[str]], where: Where, loc: tuple[Any, ...]) -> list[Problem]:
    """Distinct column names, and as many fields in every row as in the header."""
    if len(header) > MAX_COLUMNS:  # checked first: every later step is per column
        return [
            where.problem(
                loc,
                f"{path.name} has {len(header):,} columns (limit: {MAX_COLUMNS:,} columns)",
                "a CSV row per sample, a column per feature",
            )
        ]
    problems = []
    duplicated = sorted(name for name, count in Counter(header).items() if count > 1)
    if duplicated:
        problems.append(where.problem(loc, f"{path.name} names columns more than once: {', '.join(duplicated)}"))
    for number, row in enumerate(rows[1:], start=2):
        if row and len(row) != len(header):
            problems.append(
                where.problem(
                    loc, f"{path.name} line {number} has {len(row)} fields, the header {len(header)}", "check the delimiter and quoting"
                )
            )
            break  # the first ragged row is enough to find the cause
    return problems


def first_bad_value(
    path: Path,
    header: list[str],
    rows: Iterable[tuple[int, list[str]]],
    types: dict[str, str],
    spec: CsvData,
    where: Where,
    inferred: Collection[str] = (),
) -> Problem:
    """Where the first value that is not of its column's type is — line and column — located at the key that gave the type.

    `types` holds every column read as typed values; `inferred` the targets whose type the streamed reader inferred from the first rows.
    """
    typed = typed_positions(header, types)
    for number, row in rows:
        if problem := row_problem(path.name, number, row, typed, spec, where, inferred):
            return problem
    return where.problem(("features",), f"{path.name}: a value is not of its column's type")


def typed_positions(header: list[str], types: dict[str, str]) -> list[tuple[int, str, str]]:
    """(position, name, type) of the typed columns, in the file's order: the order a row's values are checked in."""
    return [(i, name, types[name]) for i, name in enumerate(header) if name in types]


def row_problem(
    filename: str,
    number: int,
    row: list[str],
    typed: list[tuple[int, str, str]],
    spec: CsvData,
    where: Where,
    inferred: Collection[str] = (),
) -> Problem | None:
    """The located problem of the first value in `row` (file line `number`) that is not of its column's type, or None."""
    for i, name, kind in typed:
        if problem := value_problem(row[i], kind):
            return value_location(filename, number, name, row[i], problem, spec, where, name in inferred)
    return None


def value_location(
    filename: str, number: int, column: str, value: str, problem: str, spec: CsvData, where: Where, inferred: bool = False
) -> Problem:
    """The located problem of one bad value: at column_types when declared, else at the key that made it a feature, weight or target."""
    message = f"{filename} line {number}, column `{column}`: {value!r} {problem}"
    if column in spec.column_types:
        return where.problem(("column_types", column), message)
    if column == spec.sample_weight:
        return where.problem(("sample_weight",), message)
    if inferred:
        return where.problem(("target",), f"{message} (declare data.column_types for it)")
    hint = f"to read `{column}` as text, declare data.column_types: {{{column}: string}}" if problem == "is not a number" else None
    if value.strip().lower() in MISSING_MARKS:  # a missing value, not text: reading the column as text would make it a category
        hint = "it looks like a missing value: fill it in or drop the row (kerasrun reads no missing values)"
    return where.problem(("features",), message, hint)


# How files mark a missing value (pandas's default na_values, lower-cased); "nan" parses as a number and is checked as one.
MISSING_MARKS = {"na", "n/a", "#n/a", "null", "none", "nil", "-", "?", "-nan", "<na>", "#na", "missing"}


def column_values(raw: list[str], classes: list[str] | None = None, text: bool = False) -> tuple[np.ndarray, list[str] | None]:
    """A target column: numbers (integers when whole), or text labels numbered by `classes` (default: their own sorted
    set) together with the labels found; a label outside `classes` is numbered -1 (the caller refuses it).

    With `text`, numbers are text labels too (column_types: string).
    """
    try:
        if text:
            raise ValueError("text labels")
        values = np.array([float(v) for v in raw], dtype=np.float32)
    except ValueError:
        found = sorted(set(raw))
        number = {name: i for i, name in enumerate(found if classes is None else classes)}
        return np.array([number.get(v, -1) for v in raw], dtype=np.int64), found
    return (values.astype(np.int64) if np.all(values == np.round(values)) else values), None


def read(spec: CsvData, where: Where) -> Data:
    """A CSV table, with an optional test file or seeded test fraction."""
    if spec.stream:
        from kerasrun.data.sources.csv_stream import read_stream

        return read_stream(spec, where)
    train, classes = read_csv_table(where.resolve_path(spec.path), spec, where, ("path",))
    validation = (
        read_csv_table(where.resolve_path(spec.validation_path), spec, where, ("validation_path",), classes)[0]
        if spec.validation_path
        else None
    )
    names = classes.get(None)  # a single text target: its classes, for the run folder's classes.json
    if spec.test_path:
        test = read_csv_table(where.resolve_path(spec.test_path), spec, where, ("test_path",), classes)[0]
        return Data(train, validation=validation, test=test, class_names=names)
    data = split_test(train, spec.test_fraction, stratify=False, where=where) if spec.test_fraction else Data(train)
    return replace(data, validation=validation, class_names=names)
