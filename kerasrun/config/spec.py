"""The object-spec format — `Name`, `module:Name`, `{Name: {kwargs}}`, Keras's `{class_name:, config:}` — checked and taken apart; `model.layers` entries with `inputs` and `adapt`."""

from __future__ import annotations

import re
from typing import Any

from kerasrun.config.yamlsource import SCIENTIFIC

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def check_object_spec(value: Any) -> Any:
    """Accept `name`, `module:Name`, `{Name: {kwargs}}` or Keras's `{class_name:, config:}`."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict):
        if "class_name" in value:
            check_numbers_are_numbers(value.get("config"))
            return value
        if len(value) == 1:
            ((name, kwargs),) = value.items()
            if isinstance(name, str) and (kwargs is None or isinstance(kwargs, dict)):
                check_numbers_are_numbers(kwargs)
                return value
    raise ValueError(
        "expected a name (`adam`), an import path (`pkg.module:Name`), `{Name: {kwargs}}` or Keras's `{class_name: ..., config: {...}}`"
    )


def object_kwargs(spec: Any) -> dict[str, Any]:
    """The keyword arguments of an object spec (`{Name: {kwargs}}` or Keras's `{class_name:, config:}`); {} for a bare name."""
    if not isinstance(spec, dict):
        return {}
    kwargs = spec.get("config") if "class_name" in spec else next(iter(spec.values()), None)
    return kwargs if isinstance(kwargs, dict) else {}


def check_numbers_are_numbers(kwargs: Any) -> None:
    """`learning_rate: 1e-3` is the text "1e-3" to YAML 1.1: say so here, not as a TypeError inside Keras."""
    for key, value in kwargs.items() if isinstance(kwargs, dict) else ():
        if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
            raise ValueError(
                f"`{key}: {value}` is text to YAML, not a number: write it with a dot and a signed exponent, e.g. {float(value):.1e}"
            )


ENTRY_KEYS = ("inputs", "adapt")  # keys of a `model.layers` entry beside the layer itself


def split_layer_entry(entry: Any) -> tuple[Any, Any]:
    """(layer spec, its `inputs` reference or None) from a `model.layers` entry."""
    if isinstance(entry, dict) and any(key in entry for key in ENTRY_KEYS) and "class_name" not in entry:
        return {k: v for k, v in entry.items() if k not in ENTRY_KEYS}, entry.get("inputs")
    return entry, None


def adapt_flag(entry: Any) -> bool | None:
    """A `model.layers` entry's `adapt`: true/false as written, None when not given (kerasrun decides)."""
    return entry.get("adapt") if isinstance(entry, dict) and "class_name" not in entry else None
