"""Pydantic's validation errors as located, human problems: file:line:column, dotted key, did-you-mean."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from kerasrun.config.yamlsource import SCIENTIFIC, SourceMap, format_key
from kerasrun.errors import Collector, Problem


def describe_validation_error(exc: ValidationError, data: dict[str, Any], source: SourceMap, root: type[BaseModel]) -> list[Problem]:
    """Turn pydantic's errors into located, human problems (with did-you-mean)."""
    collector = Collector()
    seen: set[tuple[str, str]] = set()
    members: dict[tuple[Any, ...], list[str]] = {}  # a union's member errors at one key ("a valid string", "a valid dictionary")
    for err in exc.errors(include_url=False):
        loc = data_path(tuple(err["loc"]), source)
        message = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] not in ("missing", "extra_forbidden") and is_member_tag(loc[-1]) and not present(data, loc):
            # pydantic names the union member that failed (`data.target.str`, `data.target.dict[str,str]`): one problem at the key.
            members.setdefault(loc[:-1], []).append(message.removeprefix("Input should be "))
            continue
        if err["type"] == "extra_forbidden":
            allowed = sorted(allowed_keys(loc[:-1], data, root))
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            message = "unknown key"
            hint = (f"did you mean `{close[0]}`? " if close else "") + (f"Expected one of: {', '.join(allowed)}" if allowed else "")
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            expected = err.get("ctx", {}).get("expected_tags", "")
            message = f"`source` must be one of {expected}"
            if err["type"] == "union_tag_invalid":
                got = str(err.get("ctx", {}).get("tag", ""))
                close = difflib.get_close_matches(got, [t.strip(" '") for t in str(expected).split(",")], n=1)
                hint = f"did you mean `{close[0]}`?" if close else None
            loc = loc + ("source",)
            message = message.replace("`source` must", "must")
        elif "input" in err and isinstance(err["input"], (str, int, float, bool)) and err["type"] != "value_error":
            got = repr(err["input"])
            message += f" (got {got if len(got) <= 80 else got[:80] + '…'})"  # a 120 kB ${VAR} is shown by its start
            hint = yaml_hint(err["input"], err["type"])
        dedupe = (format_key(loc), message)
        if dedupe in seen:
            continue
        seen.add(dedupe)
        collector.add(source.problem(loc, message, hint))
    for loc, expected in members.items():
        unique = list(dict.fromkeys(expected))
        collector.add(source.problem(loc, f"Input should be {' or '.join(unique)}" + got_suffix(data, loc)))
    return collector.problems


MEMBER_TAG = re.compile(r"^(str|int|float|bool|bytes|none|list|dict|tuple|set)$|^[a-z_-]+\[.*\]$")  # how pydantic names a union member


def is_member_tag(part: Any) -> bool:
    """Whether a loc part is pydantic's name for a union member (`str`, `dict[str,str]`, `list[...]`), not a config key."""
    return isinstance(part, str) and bool(MEMBER_TAG.match(part))


def present(data: Any, loc: tuple[Any, ...]) -> bool:
    """Whether `loc` names a value in the config data (keys and list indexes)."""
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        else:
            return False
    return True


def got_suffix(data: Any, loc: tuple[Any, ...]) -> str:
    """` (got None)`: the value at `loc` when it is a short scalar."""
    node = data
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else node[part] if isinstance(node, list) and isinstance(part, int) else None
    return f" (got {node!r})" if node is None or (isinstance(node, (str, int, float, bool)) and len(repr(node)) <= 80) else ""


def yaml_hint(value: Any, error_type: str = "") -> str | None:
    """What YAML did to a value that was meant as a number (or as text), when that explains the error."""
    if error_type == "string_type" and isinstance(value, (bool, int, float)):
        return f"YAML reads {value!r} as a {'boolean' if isinstance(value, bool) else 'number'}: quote it to make it text, e.g. '{value}'"
    if isinstance(value, bool):
        return "YAML reads true/false/yes/no/on/off as booleans"
    if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
        number = float(value)
        if error_type.startswith("int") and number.is_integer() and abs(number) < 1e18:
            return f"YAML reads {value} as text: write the integer, {int(number)}"
        return f"YAML reads {value} as text: write it with a dot and a signed exponent, e.g. {number:.1e}"
    return None


def data_path(loc: tuple[Any, ...], source: SourceMap) -> tuple[Any, ...]:
    """Drop pydantic's union tags from a loc, keeping only keys that exist in the YAML (and the last)."""
    kept: list[Any] = []
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        candidate = tuple(str(p) for p in (*kept, part))
        # Keys set by --set, and everything inside a value given by --set, exist though the file lacks them.
        overridden = any(path[: len(candidate)] == candidate or candidate[: len(path)] == path for path in source.overrides)
        if candidate in source.positions or overridden or i == len(loc) - 1:
            kept.append(part)
    return tuple(kept)


def allowed_keys(loc: tuple[Any, ...], data: dict[str, Any], root: type[BaseModel]) -> set[str]:
    """The field names the schema allows at `loc` (a mapping inside the config)."""
    types: list[Any] = [root]
    node: Any = data
    for part in loc:
        next_types: list[Any] = []
        for tp in types:
            next_types.extend(step_type(tp, part, node))
        types = next_types
        node = (
            node.get(part)
            if isinstance(node, dict)
            else (node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
        )
    names: set[str] = set()
    for tp in types:
        for cls in flatten_type(tp):
            if isinstance(cls, type) and issubclass(cls, BaseModel):
                names.update(cls.model_fields)
    return names


def flatten_type(tp: Any) -> list[Any]:
    """Unwrap Annotated/Optional/Union into concrete member types."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return flatten_type(typing.get_args(tp)[0])
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return [t for arg in typing.get_args(tp) for t in flatten_type(arg)]
    return [tp]


def step_type(tp: Any, part: Any, node: Any) -> list[Any]:
    """The type(s) found one key or index below `tp`."""
    out: list[Any] = []
    for cls in flatten_type(tp):
        origin = typing.get_origin(cls)
        if isinstance(cls, type) and issubclass(cls, BaseModel) and part in cls.model_fields:
            field_type = cls.model_fields[part].annotation
            members = flatten_type(field_type)
            sub = node.get(part) if isinstance(node, dict) else None
            # A discriminated union: keep only the member whose `source` matches the data.
            tagged = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel) and "source" in m.model_fields]
            if tagged and isinstance(sub, dict):
                match = [m for m in tagged if sub.get("source") in typing.get_args(m.model_fields["source"].annotation)]
                out.extend(match or tagged)
            else:
                out.append(field_type)
        elif origin is list and isinstance(part, int):
            out.append(typing.get_args(cls)[0])
        elif origin is dict:
            out.append(typing.get_args(cls)[1])
    return out
