"""CSV column types (`data.column_types`): what a value of each type is, the type each feature column is read as,
which model input takes it — the one set of rules that `validate` and both CSV readers (in memory, streamed) apply.

- `float32`: a number (what Python's `float()` reads). Undeclared feature columns are float32.
- `int64`: an integer written as one — an optional sign, ASCII digits, spaces around — within int64's range:
  what `tf.io.decode_csv` reads as int64 (`3.0` and `1e3` are not integers; `+3` and ` 3 ` are).
- `string`: the text as written (an empty field is the empty text), handed on as UTF-8 bytes.

An input's columns share one type: its array has that dtype, shape (rows, columns). A text column is never
guessed from the values: a feature column holding text is refused, and the message says how to declare it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kerasrun.errors import Problem
from kerasrun.imports import suggest

Locate = Callable[[tuple[Any, ...], str, str | None], Problem]

SPACES = " \t\n\v\f\r"  # what both parsers skip around an integer (C's isspace)
INTEGER = re.compile(rf"[{SPACES}]*[+-]?[0-9]+[{SPACES}]*")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# What a model input's dtype takes from a CSV: text, integers or floats (a bool input takes no CSV column type).
DTYPE_KINDS = {
    "string": "text",
    **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8", "uint16"), "integers"),
    **dict.fromkeys(("float16", "bfloat16", "float32", "float64"), "numbers"),
    "bool": "booleans",
}
TYPE_FOR_KIND = {"text": "string", "integers": "int64", "numbers": "float32"}  # the column type an input of each kind takes


def parse_int64(value: str) -> int | None:
    """`value` as an int64 (see the module docstring), or None when it is none."""
    if INTEGER.fullmatch(value) is None:
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


def value_problem(value: str, kind: str) -> str | None:
    """Why `value` is not a value of column type `kind` — `is missing`, `is not a number`, `is not an integer` — or None."""
    if kind == "string":
        return None
    if value == "":
        return "is missing"
    if kind == "int64":
        return "is not an integer" if parse_int64(value) is None else None
    try:
        float(value)
    except ValueError:
        return "is not a number"
    return None


def feature_type(column_types: Mapping[str, str], column: str) -> str:
    """The type a feature column is read as: declared in column_types, else float32."""
    return column_types.get(column, "float32")


def group_type(column_types: Mapping[str, str], columns: list[str]) -> str | None:
    """The one type of an input's columns, or None when they mix types."""
    types = {feature_type(column_types, c) for c in columns}
    return types.pop() if len(types) == 1 else None if types else "float32"


def mixed_group_problems(features: dict[Any, list[str]], column_types: Mapping[str, str], locate: Locate, default: bool) -> list[Problem]:
    """A problem for each input whose columns mix types, naming the odd column; `default`: features: were not given (every other column)."""
    problems = []
    for group, columns in features.items():
        if group_type(column_types, columns) is not None:
            continue
        types = [feature_type(column_types, c) for c in columns]
        common = Counter(types).most_common(1)[0][0]  # the input's type; on a tie the first column's
        odd = [c for c, t in zip(columns, types, strict=True) if t != common]
        kind = feature_type(column_types, odd[0])
        others = [c for c, t in zip(columns, types, strict=True) if t == common]
        what = f"input `{group}`" if group is not None else "the features" + (" (every column but the target)" if default else "")
        shown = ", ".join(others[:5]) + (f", … ({len(others)} columns)" if len(others) > 5 else "")
        loc: tuple[Any, ...] = ("column_types", odd[0]) if default else ("features", group) if group is not None else ("features",)
        problems.append(
            locate(
                loc,
                f"column `{odd[0]}` is {kind}, but the other columns of {what} are {common} ({shown}): an input's columns share one type",
                f"give `{odd[0]}` an input of its own: features: {{…, {odd[0]}: [{odd[0]}]}} "
                f"with model.inputs.{odd[0]}: {{shape: [1], dtype: {kind}}}",
            )
        )
    return problems


def column_types_problems(
    column_types: Mapping[str, str],
    targets: list[str],
    features: list[str] | None,
    weight: str | None,
    locate: Locate,
    header: list[str] | None = None,
    filename: str = "",
) -> list[Problem]:
    """column_types names target and feature columns only; `features` None: every column but the targets and weight (`header`, when known)."""
    problems = []
    for name in column_types:
        loc = ("column_types", name)
        if name in targets or (features is not None and name in features):
            continue
        if name == weight:
            problems.append(
                locate(loc, f"`{name}` is the sample_weight column: weights are always float32", "column_types is for targets and features")
            )
        elif header is not None and name not in header:
            problems.append(
                locate(loc, f"{filename} has no column `{name}`", suggest(name, header) or f"columns: {', '.join(header[:20])}")
            )
        elif features is not None:
            known = targets + features
            listed = f"targets: {', '.join(targets)}; features: {', '.join(features[:20])}"
            problems.append(
                locate(loc, f"`{name}` is neither a target nor a feature column", f"{suggest(name, known) or ''} {listed}".strip())
            )
    return problems


def input_type_problem(
    name: str, dtype: str, columns: list[str], column_type: str, column_types: Mapping[str, str], cast: str | None = None
) -> tuple[str, str] | None:
    """(message, hint) when model input `name` of `dtype` can't take columns of `column_type` (`cast` by data.preprocess), else None."""
    kind = DTYPE_KINDS.get(dtype)
    arrives = cast or column_type
    if (kind == DTYPE_KINDS.get(arrives) and kind != "booleans") or (cast is not None and cast == dtype):
        return None
    shown = ", ".join(f"`{c}`" for c in columns[:5]) + (f", … ({len(columns)} columns)" if len(columns) > 5 else "")
    how = "declared" if any(c in column_types for c in columns) else "read"
    plural = len(columns) > 1
    message = f"model input `{name}` takes {dtype}, but its column{'s' * plural} {shown} {'are' if plural else 'is'} {how} as {column_type}"
    if cast is not None:
        message += f" and cast to {cast} by data.preprocess"
    wanted = TYPE_FOR_KIND.get(kind or "")
    if wanted is None:
        return message, f"no CSV column type gives {dtype}: declare the input float32, int64 or string"
    mapping = ", ".join(f"{c}: {wanted}" for c in columns[:5])
    return message, f"declare data.column_types: {{{mapping}}}, or the input `dtype: {arrives}`"
