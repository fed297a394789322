"""`source: csv` with `stream: true`: a CSV file read by tf.data while training, never materialized in memory.

One streamed pass at load time checks every row (field counts, numbers, finite values), counts the
rows and keeps each row's class when the target is a class (a byte or two per row): enough for
held-out fractions, stratified splits and class weights. Training then reads the file again every
epoch: lines → batches parsed by `tf.io.decode_csv` → rows → the split's own rows → a bounded shuffle.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.data import CsvData
from kerasrun.data.arrays import Data
from kerasrun.data.preprocess import preprocess_element
from kerasrun.data.sources.base import Where, split_test
from kerasrun.data.sources.csv import choose_columns, read_rows
from kerasrun.data.stream import Stream, compact
from kerasrun.errors import ConfigError, first_line

INFER_ROWS = 1000  # rows read with Python's csv module to check the header and infer the target's type
PARSE_LINES = 4096  # lines parsed per tf.io.decode_csv call (vectorized; rows are split off afterwards)
MAX_STREAM_CLASSES = 1 << 16  # distinct text labels; more is not a class column


def read_stream(spec: CsvData, where: Where) -> Data:
    """The training file (and a test file or a held-out fraction of it) as Streams."""
    train, classes = stream_file(spec, where, ("path",), None)
    validation = stream_file(spec, where, ("validation_path",), classes)[0] if spec.validation_path is not None else None
    if spec.test_path is not None:
        test, _ = stream_file(spec, where, ("test_path",), classes)
        return Data(train, validation=validation, test=test, class_names=classes)
    # A test fraction holds out the rows the in-memory reader would hold out.
    data = split_test(train, spec.test_fraction, stratify=False, where=where) if spec.test_fraction else Data(train)
    return replace(data, validation=validation, class_names=classes)


def stream_file(spec: CsvData, where: Where, loc: tuple[Any, ...], classes: list[str] | None) -> tuple[Stream, list[str] | None]:
    """One CSV file as a Stream, after a checking pass; the class names of a text target (the training file's, for a test file)."""
    from kerasrun._tf import tf

    path = where.resolve_path(getattr(spec, loc[0]))
    header, sample = read_head(path, spec, where, loc)
    training = classes is None and loc == ("path",)  # only the training file carries sample weights
    targets, features = choose_columns(path, header, spec, where, training)
    weight = spec.sample_weight if training else None
    if (len(targets) > 1 or len(features) > 1) and spec.preprocess:
        raise ConfigError(where.problem(("preprocess",), "preprocess steps apply to single-array features and targets"))
    types = target_types(header, sample, targets, spec, where)
    index = {name: i for i, name in enumerate(header)}
    feature_columns = {c for columns in features.values() for c in columns}
    dtype_of = {c: tf.float32 for c in [*feature_columns, *([weight] if weight else [])]} | {
        c: tf.as_dtype(types[c]) for c in targets.values()
    }
    defaults = [tf.constant([], dtype_of.get(name, tf.string)) for name in header]
    single = next(iter(targets.values())) if len(targets) == 1 else None
    text_target = single is not None and types[single] == "string"

    def parse(lines: Any) -> tuple[Any, ...]:
        """A batch of lines → ({group: features} or features, {group: target} or target[, sample weights])."""
        fields = tf.io.decode_csv(lines, defaults, field_delim=spec.delimiter)
        x = {group: tf.stack([fields[index[c]] for c in columns], axis=1) for group, columns in features.items()}
        y = {group: fields[index[c]] for group, c in targets.items()}
        return (x.get(None, x), y.get(None, y)) + ((fields[index[weight]],) if weight else ())

    def lines() -> Any:
        return tf.data.TextLineDataset(str(path)).skip(1).filter(lambda line: tf.strings.length(line) > 0)

    parsed = lines().batch(PARSE_LINES).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    total, labels, found = checking_pass(parsed, path, spec, where, loc, single, types)
    names = classes
    if text_target:
        assert labels is not None and found is not None  # a text target's labels are always gathered
        if classes is None:
            names = sorted(found)
        unknown = sorted(set(found) - set(names or []))
        if unknown:
            raise ConfigError(where.problem(loc, f"{path.name} has labels the training file has not: {unknown[:10]}"))
        order = np.array([names.index(value) for value in found], dtype=np.int64)  # type: ignore[union-attr]  # names is set above
        labels = compact(order[labels])
    table = None
    if text_target and names is not None:
        keys = tf.constant([name.encode(spec.encoding) for name in names])
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(names), dtype=tf.int64)), -1)
    steps = spec.preprocess

    def make() -> Any:
        """Every row of the file, as (x, y) elements in file order, preprocessed."""

        def parse_rows(batch: Any) -> tuple[Any, ...]:
            x, y, *rest = parse(batch)
            return (x, table.lookup(y) if table is not None else y, *rest)

        def preprocess_row(x: Any, y: Any, *rest: Any) -> tuple[Any, ...]:
            return (*preprocess_element(x, y, steps), *rest)

        rows = lines().batch(PARSE_LINES).map(parse_rows, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        return rows.map(preprocess_row) if steps else rows

    try:
        _ = make().element_spec  # traces the preprocess steps: a reshape that can't apply fails here, not in training
    except ValueError as exc:
        raise ConfigError(where.problem(("preprocess",), f"cannot apply to the rows of {path.name}: {first_line(exc)}")) from None
    return Stream(make=make, total=total, shuffle_buffer=spec.shuffle_buffer, labels=labels), (names if text_target else None)


def read_head(path: Path, spec: CsvData, where: Where, loc: tuple[Any, ...]) -> tuple[list[str], list[list[str]]]:
    """The header and the first INFER_ROWS rows, read and checked as the in-memory reader reads a whole file."""
    rows = read_rows(path, spec, where, loc, INFER_ROWS)
    return rows[0], [row for row in rows[1:] if row]


def target_types(header: list[str], sample: list[list[str]], targets: dict[Any, str], spec: CsvData, where: Where) -> dict[str, str]:
    """Each target column's dtype: declared in column_types, else int64 / float32 / string from the first rows."""
    unknown = [name for name in spec.column_types if name not in targets.values()]
    if unknown:
        raise ConfigError(
            [
                where.problem(("column_types", name), f"`{name}` is not a target column", f"targets: {', '.join(targets.values())}")
                for name in unknown
            ]
        )
    index = {name: i for i, name in enumerate(header)}
    types: dict[str, str] = {}
    for column in targets.values():
        if column in spec.column_types:
            types[column] = spec.column_types[column]
            continue
        values = [row[index[column]] for row in sample]
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            types[column] = "string"
            continue
        types[column] = "int64" if all(n == round(n) for n in numbers) else "float32"
    return types


def checking_pass(
    batches: Any, path: Path, spec: CsvData, where: Where, loc: tuple[Any, ...], single: str | None, types: dict[str, str]
) -> tuple[int, np.ndarray | None, list[str] | None]:
    """Read the whole file once: every row parses and is finite; the class of every row when the target is one.

    Returns (rows, labels, text values): for a text target, labels index the text values in the order they
    were first seen; for an integer target, the labels themselves; (None, None) for other targets.
    """
    from kerasrun._tf import tf

    chunks: list[np.ndarray] = []
    seen: dict[bytes, int] = {}
    rows = 0
    kind = types.get(single) if single is not None else None
    try:
        for x, y, *weights in batches.as_numpy_iterator():
            if not spec.allow_nonfinite:
                for values in x.values() if isinstance(x, dict) else [x]:
                    bad = ~np.isfinite(values)
                    if bad.any():
                        row, column = (int(i) for i in np.argwhere(bad)[0])
                        raise ConfigError(
                            where.problem(
                                loc,
                                f"{path.name}: data row {rows + row + 1} holds NaN or inf (feature {column})",
                                "fix the data, or set data.allow_nonfinite: true",
                            )
                        )
                for values in weights:  # as the in-memory reader's sample weights are checked
                    bad = ~np.isfinite(values)
                    if bad.any():
                        row = int(np.argwhere(bad)[0][0])
                        raise ConfigError(
                            where.problem(
                                ("sample_weight",),
                                f"{path.name}: data row {rows + row + 1} holds NaN or inf in column `{spec.sample_weight}`",
                                "fix the data, or set data.allow_nonfinite: true",
                            )
                        )
            if kind == "string":
                values, inverse = np.unique(y, return_inverse=True)
                codes = np.array([seen.setdefault(bytes(v), len(seen)) for v in values], dtype=np.int64)
                if len(seen) > MAX_STREAM_CLASSES:
                    raise ConfigError(where.problem(("target",), f"{path.name}: more than {MAX_STREAM_CLASSES} distinct text labels"))
                chunks.append(codes[inverse.reshape(-1)])
            elif kind == "int64":
                chunks.append(np.asarray(y, dtype=np.int64))
            rows += len(y) if not isinstance(y, dict) else len(next(iter(y.values())))
    except tf.errors.InvalidArgumentError as exc:
        raise ConfigError(where.problem(loc, first_bad_line(path, spec, types) or f"{path.name}: {first_line(exc)}")) from None
    if kind not in ("string", "int64"):
        return rows, None, None
    labels = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    if kind == "string":
        return rows, labels, [value.decode(spec.encoding, errors="replace") for value in seen]
    if labels.size and labels.min() >= 0:
        labels = compact(labels)
    return rows, labels, None


def first_bad_line(path: Path, spec: CsvData, types: dict[str, str]) -> str | None:
    """Where the first row that tf.io.decode_csv rejects is, by line and column (a streamed scan with Python's csv module)."""
    with path.open(newline="", encoding=spec.encoding, errors="replace") as f:
        rows: Iterator[list[str]] = csv.reader(f, delimiter=spec.delimiter)
        header = next(rows)
        targets = set(types)
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                return f"{path.name} line {number} has {len(row)} fields, the header {len(header)}"
            for name, value in zip(header, row, strict=True):
                parsed = name in targets or name == spec.sample_weight or spec.features is None or is_feature(name, spec)
                problem = value_problem(value, types.get(name, "float32")) if parsed else None  # other columns are read as text
                if problem:
                    hint = " (declare data.column_types for it)" if name in targets else ""
                    return f"{path.name} line {number}, column `{name}`: {value!r} {problem}{hint}"
    return None


def is_feature(name: str, spec: CsvData) -> bool:
    """Whether `name` is one of the declared feature columns."""
    groups = spec.features.values() if isinstance(spec.features, dict) else [spec.features or []]
    return any(name in columns for columns in groups)


def value_problem(value: str, kind: str) -> str | None:
    """Why tf.io.decode_csv would reject `value` as `kind`, or None."""
    if kind == "string":
        return None
    try:
        number = float(value)
    except ValueError:
        return "is not a number" if value else "is missing"
    if kind == "int64" and number != int(number):
        return "is not an integer"
    return None
