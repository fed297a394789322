"""The object-spec format — `Name`, `module:Name`, `{Name: {kwargs}}`, Keras's `{class_name:, config:}` — checked and taken apart; `model.layers` entries with `inputs` and `adapt`."""

from __future__ import annotations

from typing import Any

from kerasrun.config.yamlsource import SCIENTIFIC


def split_spec(spec: Any) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(name, kwargs, Keras's dict or None) of an object spec in any of its forms; ("", {}, None) for anything else."""
    if isinstance(spec, str):
        return spec, {}, None
    if isinstance(spec, dict) and "class_name" in spec:
        config = spec.get("config")
        return str(spec["class_name"]), dict(config) if isinstance(config, dict) else {}, spec
    if isinstance(spec, dict) and len(spec) == 1:
        ((name, kwargs),) = spec.items()
        return str(name), dict(kwargs) if isinstance(kwargs, dict) else {}, None
    return "", {}, None


def is_named_object(value: Any) -> bool:
    """Whether `value` is `{Name: {kwargs}}`: one string key whose value is a mapping or null."""
    if not isinstance(value, dict) or len(value) != 1 or "class_name" in value:
        return False
    ((name, kwargs),) = value.items()
    return isinstance(name, str) and (kwargs is None or isinstance(kwargs, dict))


def check_object_spec(value: Any) -> Any:
    """Accept `name`, `module:Name`, `{Name: {kwargs}}` or Keras's `{class_name:, config:}`."""
    if (isinstance(value, str) and value.strip()) or (isinstance(value, dict) and "class_name" in value) or is_named_object(value):
        check_numbers_are_numbers(split_spec(value)[1])
        return value
    raise ValueError(
        "expected a name (`adam`), an import path (`pkg.module:Name`), `{Name: {kwargs}}` or Keras's `{class_name: ..., config: {...}}`"
    )


def check_numbers_are_numbers(kwargs: dict[Any, Any], prefix: str = "") -> None:
    """`learning_rate: 1e-3` is the text "1e-3" to YAML 1.1: say so here, not as a TypeError inside Keras.

    Nested specs too (`kernel_regularizer: {L2: {l2: 1e-4}}`, a schedule's `initial_learning_rate`),
    named by their dotted path; text in a list (a vocabulary) may be anything.
    """
    for key, value in kwargs.items():
        path = f"{prefix}{key}"
        if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
            raise ValueError(
                f"`{path}: {value}` is text to YAML, not a number: write it with a dot and a signed exponent, e.g. {float(value):.1e}"
            )
        if isinstance(value, dict):
            check_numbers_are_numbers(value, f"{path}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    check_numbers_are_numbers(item, f"{path}[{index}].")


ENTRY_KEYS = ("inputs", "adapt")  # keys of a `model.layers` entry beside the layer itself


def split_layer_entry(entry: Any) -> tuple[Any, Any]:
    """(layer spec, its `inputs` reference or None) from a `model.layers` entry."""
    if isinstance(entry, dict) and any(key in entry for key in ENTRY_KEYS) and "class_name" not in entry:
        return {k: v for k, v in entry.items() if k not in ENTRY_KEYS}, entry.get("inputs")
    return entry, None


def adapt_flag(entry: Any) -> bool | None:
    """A `model.layers` entry's `adapt`: true/false as written, None when not given (kerasrun decides)."""
    return entry.get("adapt") if isinstance(entry, dict) and "class_name" not in entry else None
