"""`source: csv` with `stream: true`: a CSV file read by tf.data while training, never materialized in memory.

One streamed pass at load time checks every row (field counts, numbers, finite values), counts the
rows and keeps each row's class when the target is a class (a byte or two per row): enough for
held-out fractions, stratified splits and class weights. Training then reads the file again every
epoch: lines → batches parsed by `tf.io.decode_csv` → rows → the split's own rows → a bounded shuffle.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from kerasrun.config.csv_types import parse_int64
from kerasrun.config.data import CsvData
from kerasrun.data.arrays import Data
from kerasrun.data.preprocess import preprocess_element
from kerasrun.data.sources.base import Where, split_test
from kerasrun.data.sources.csv import choose_columns, encoding_hint, input_type, missing_label, read_rows, row_problem, typed_positions
from kerasrun.data.sources.csv_fast import is_number
from kerasrun.data.stream import Stream, compact
from kerasrun.errors import ConfigError, Problem, first_line

INFER_ROWS = 1000  # rows read with Python's csv module to check the header and infer the target's type
PARSE_LINES = 4096  # lines parsed per tf.io.decode_csv call (vectorized; rows are split off afterwards)
MAX_STREAM_CLASSES = 1 << 16  # distinct text labels; more is not a class column
MAX_DECODED = 1 << 16  # distinct text feature values remembered as decodable


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
    types = target_types(header, sample, targets, spec)
    index = {name: i for i, name in enumerate(header)}
    weight_type = {weight: "float32"} if weight else {}
    column_type = {c: input_type(spec, columns) for columns in features.values() for c in columns} | weight_type | types
    # A text field may be empty (the empty text); a number must be there. Columns nothing reads are read as text.
    defaults = [
        tf.constant([""] if column_type.get(name, "string") == "string" else [], column_type.get(name, "string")) for name in header
    ]
    single = next(iter(targets.values())) if len(targets) == 1 else None
    text_target = single is not None and types[single] == "string"
    texts = {c for columns in features.values() for c in columns if column_type[c] == "string"}
    transcode = transcoding(spec, where) if texts else None

    def parse(lines: Any, raw: bool = False) -> tuple[Any, ...]:
        """A batch of lines → ({group: features} or features, {group: target} or target[, sample weights]); text as UTF-8 unless `raw`."""
        fields = tf.io.decode_csv(lines, defaults, field_delim=spec.delimiter)

        def column(name: str) -> Any:
            if name in texts and transcode and not raw:  # as the in-memory reader: text decoded from data.encoding, as UTF-8
                return tf.strings.unicode_transcode(fields[index[name]], input_encoding=transcode, output_encoding="UTF-8")
            return fields[index[name]]

        x = {group: tf.stack([column(c) for c in columns], axis=1) for group, columns in features.items()}
        y = {group: fields[index[c]] for group, c in targets.items()}
        return (x.get(None, x), y.get(None, y)) + ((fields[index[weight]],) if weight else ())

    def lines() -> Any:
        return tf.data.TextLineDataset(str(path)).skip(1).filter(lambda line: tf.strings.length(line) > 0)

    parsed = lines().batch(PARSE_LINES).map(lambda batch: parse(batch, raw=True), num_parallel_calls=tf.data.AUTOTUNE)
    checked = Checked(path, spec, where, loc, features, single, column_type, set(types) - set(spec.column_types))
    total, labels, found = checking_pass(parsed, checked)
    names = classes
    if text_target:
        assert labels is not None and found is not None  # a text target's labels are always gathered
        if (empty := next((i for i, value in enumerate(found) if not value.strip()), None)) is not None:
            row = int(np.flatnonzero(labels == empty)[0]) + 1
            raise ConfigError(missing_label(path.name, f"data row {row}", cast(str, single), where))
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


def transcoding(spec: CsvData, where: Where) -> str | None:
    """The encoding TensorFlow (ICU) converts text columns from to UTF-8; None for UTF-8 and ASCII files (no conversion)."""
    from kerasrun._tf import tf

    codec = codecs.lookup(spec.encoding).name
    if codec in ("utf-8", "utf-8-sig", "ascii"):
        return None
    try:
        tf.strings.unicode_transcode(tf.constant([b"a"]), input_encoding=codec, output_encoding="UTF-8")
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        raise ConfigError(
            where.problem(
                ("encoding",),
                f"TensorFlow cannot convert {spec.encoding} text to UTF-8, as the streamed reader does for a string column",
                "read the file in memory (stream: false), or convert it to UTF-8",
            )
        ) from None
    return codec


def target_types(header: list[str], sample: list[list[str]], targets: dict[Any, str], spec: CsvData) -> dict[str, str]:
    """Each target column's dtype: declared in column_types, else int64 / float32 / string from the first rows."""
    index = {name: i for i, name in enumerate(header)}
    types: dict[str, str] = {}
    for column in targets.values():
        if column in spec.column_types:
            types[column] = spec.column_types[column]
            continue
        values = [row[index[column]] for row in sample]
        if not all(is_number(v) for v in values):
            types[column] = "string"
            continue
        # Integers as tf.io.decode_csv reads them: `1.0` is a float32 target (the in-memory reader makes whole numbers int64).
        types[column] = "int64" if all(parse_int64(v) is not None for v in values) else "float32"
    return types


@dataclass(frozen=True)
class Checked:
    """What the checking pass checks a file against: its columns' types, and where to report a problem."""

    path: Path
    spec: CsvData
    where: Where
    loc: tuple[Any, ...]
    features: dict[Any, list[str]]
    single: str | None  # the one target column, when there is one
    types: dict[str, str]  # every column read as typed values: features, weight, targets
    inferred: set[str]  # targets whose type was inferred from the first rows


def checking_pass(batches: Any, checked: Checked) -> tuple[int, np.ndarray | None, list[str] | None]:
    """Read the whole file once: every row parses, is finite, its text decodes; the class of every row when the target is one.

    Returns (rows, labels, text values): for a text target, labels index the text values in the order they
    were first seen; for an integer target, the labels themselves; (None, None) for other targets.
    """
    from kerasrun._tf import tf

    path, spec, where = checked.path, checked.spec, checked.where
    chunks: list[np.ndarray] = []
    seen: dict[bytes, int] = {}
    decoded: set[bytes] = set()  # text values known to decode
    rows = 0
    kind = checked.types.get(checked.single) if checked.single is not None else None
    try:
        for x, y, *weights in batches.as_numpy_iterator():
            groups = x if isinstance(x, dict) else {None: x}
            for group, values in groups.items():
                if values.dtype == object:
                    check_text(values, checked.features[group], rows, checked, decoded)
                elif values.dtype.kind == "f" and not spec.allow_nonfinite:
                    bad = ~np.isfinite(values)
                    if bad.any():
                        row, column = (int(i) for i in np.argwhere(bad)[0])
                        raise ConfigError(
                            where.problem(
                                checked.loc,
                                f"{path.name}: data row {rows + row + 1} holds NaN or inf (feature {column})",
                                "fix the data, or set data.allow_nonfinite: true",
                            )
                        )
            for values in weights if not spec.allow_nonfinite else []:  # as the in-memory reader's sample weights are checked
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
        raise ConfigError(first_bad_line(checked) or where.problem(checked.loc, f"{path.name}: {first_line(exc)}")) from None
    if kind not in ("string", "int64"):
        return rows, None, None
    labels = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    if kind == "string":
        return rows, labels, [value.decode(spec.encoding, errors="replace") for value in seen]
    if labels.size and labels.min() >= 0:
        labels = compact(labels)
    return rows, labels, None


def check_text(values: np.ndarray, columns: list[str], rows: int, checked: Checked, decoded: set[bytes]) -> None:
    """Every value of a batch of text columns decodes from data.encoding (as the in-memory reader decodes the whole file)."""
    if len(decoded) > MAX_DECODED:  # free text: keep the memory bounded, at the price of decoding values again
        decoded.clear()
    for column in range(values.shape[1]):
        for row, value in enumerate(values[:, column]):
            if value in decoded:
                continue
            try:
                value.decode(checked.spec.encoding)
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    checked.where.problem(
                        checked.loc,
                        f"{checked.path.name}: data row {rows + row + 1}, column `{columns[column]}` is not {checked.spec.encoding} text "
                        f"(byte {exc.start} of the value)",
                        encoding_hint(checked.path),
                    )
                ) from None
            decoded.add(value)


def first_bad_line(checked: Checked) -> Problem | None:
    """Where the first row that tf.io.decode_csv rejects is, by line and column (a streamed scan with Python's csv module)."""
    path, spec = checked.path, checked.spec
    with path.open(newline="", encoding=spec.encoding, errors="replace") as f:
        rows: Iterator[list[str]] = csv.reader(f, delimiter=spec.delimiter)
        header = next(rows)
        typed = typed_positions(header, checked.types)
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                return checked.where.problem(checked.loc, f"{path.name} line {number} has {len(row)} fields, the header {len(header)}")
            if problem := row_problem(path.name, number, row, typed, spec, checked.where, checked.inferred):
                return problem
    with path.open(newline="", encoding=spec.encoding, errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if number > 1 and line and (found := quoting_problem(line, spec.delimiter)):
                field, why = found
                column = f", column `{header[field]}`" if field < len(header) else ""
                return checked.where.problem(
                    checked.loc,
                    f"{path.name} line {number}{column}: {why}",
                    "the streamed reader takes quotes as tf.io.decode_csv does: a quote only around a whole field, doubled inside it",
                )
    return None


def quoting_problem(line: str, delimiter: str) -> tuple[int, str] | None:
    """(field index, why) where tf.io.decode_csv refuses the quotes of one line, or None."""
    at, field = 0, 0
    while True:
        if line.startswith('"', at):  # a quoted field: up to the closing quote ("" inside is one quote)
            at += 1
            while True:
                end = line.find('"', at)
                if end < 0:
                    return field, "a quote opens a field and never closes (a field over several lines can't be streamed)"
                if line.startswith('"', end + 1):
                    at = end + 2
                    continue
                at = end + 1
                break
            if at < len(line) and line[at] != delimiter:
                return field, "a quote inside a quoted field must be doubled"
        else:
            end = line.find(delimiter, at)
            end = len(line) if end < 0 else end
            if '"' in line[at:end]:
                return field, "a field that is not quoted holds a quote"
            at = end
        if at >= len(line):
            return None
        at, field = at + 1, field + 1
