"""`load_config(path, overrides)`: read, compose, apply `--set`, validate against the schema and the rules across sections; `--smoke` shrinking."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kerasrun.config.compose import deletions, interpolate, read_config_file
from kerasrun.config.problems import describe_validation_error
from kerasrun.config.schema import Config, check_across_sections
from kerasrun.config.yamlsource import DELETE_TAG, MAX_BYTES, SourceMap, format_key, load_yaml_value, parse_yaml
from kerasrun.errors import Collector, ConfigError, Problem
from kerasrun.startup import make_config_folder_importable


def apply_overrides(data: dict[str, Any], overrides: list[str], source: SourceMap, values: dict[str, Any] | None = None) -> None:
    """Apply `dotted.key=value` overrides (values parsed as YAML, `${VAR}`s substituted), then `values` (taken as they are)."""
    room = [MAX_BYTES]  # what substitution may add over all the --set values, as over a config file
    for item in overrides:
        dotted, _, raw = item.partition("=")
        append = dotted.endswith("+")  # key+=[a, b] appends to the list at key
        dotted = dotted.removesuffix("+")
        if "=" not in item or not dotted.strip(".[] "):
            raise ConfigError(Problem(key=item, message="expected --set dotted.key=value", file="--set"))
        try:
            value, _, duplicates = load_yaml_value(raw, "--set")
        except ConfigError as exc:
            raise ConfigError(
                [Problem(key=dotted, message=f"value is not valid YAML: {p.message}", file="--set") for p in exc.problems]
            ) from None
        if duplicates:  # duplicate keys, or numbers in a surprising base, inside the value
            raise ConfigError(
                [Problem(key=".".join(x for x in (dotted, p.key) if x), message=p.message, file="--set", hint=p.hint) for p in duplicates]
            )
        value = substitute_set_value(dotted, value, room)
        set_dotted(data, dotted, value, source, append)
    for dotted, value in (values or {}).items():
        set_dotted(data, dotted, value, source)
        if dotted in VALUE_OPTIONS:  # a problem with it names the option the user typed
            source.origins[tuple(str(p) for p in dotted_parts(dotted))] = VALUE_OPTIONS[dotted]


# The keys train's own options set through `values` (kerasrun.cli.training), by the option's name.
VALUE_OPTIONS = {"runtime.device": "--device", "name": "--name", "model.init_from.path": "--init-from"}


def substitute_set_value(dotted: str, value: Any, room: list[int]) -> Any:
    """A --set value with its `${VAR}`s substituted as a config file's are; an unset variable is a ConfigError naming `--set`."""
    try:
        parts: list[Any] = dotted_parts(dotted)
    except ValueError:
        return value  # set_dotted says what is wrong with the key
    holder = {parts[-1]: value}
    # Every key under this one came from the command line, so each problem is reported as `--set KEY`.
    where = SourceMap(file="--set", overrides={tuple(str(p) for p in parts)})
    problems = interpolate(holder, where, tuple(parts[:-1]), room)
    if problems:
        raise ConfigError(problems)
    return holder[parts[-1]]


# A dotted key: a key, then `.key` or `[index]` any number of times; a key holds no `.`, `[` or `]`.
DOTTED = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+|\[\d+\])*")


def dotted_parts(dotted: str) -> list[str | int]:
    """The keys and list indices of a dotted key: `a.b[2].c` → ["a", "b", 2, "c"] (as --set and a sweep's keys write them).

    ValueError for what is not one: `train..epochs`, `.a`, `a.`, `a[x]` (an empty key would set some other key, silently).
    """
    if not DOTTED.fullmatch(dotted):
        raise ValueError("not a dotted key: keys joined by single dots, list items as [N]")
    return [int(p) if p.isdigit() else p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]


def set_dotted(data: dict[str, Any], dotted: str, value: Any, source: SourceMap, append: bool = False) -> None:
    """Set `a.b[2].c` in the raw config (or append to the list there), creating mappings on the way; remember it came from the command line."""
    try:
        parts: list[Any] = dotted_parts(dotted)
    except ValueError as exc:
        raise ConfigError(
            Problem(key=dotted, message=str(exc), file="--set", hint="e.g. train.epochs=5, model.layers[0].Dense.units=64")
        ) from None
    target: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(target, list) and isinstance(part, int) and part < len(target):
            target = target[part]
        elif isinstance(target, dict):
            if isinstance(target.get(part), str) and tuple(parts[: i + 1]) == ("model", "init_from"):
                target[part] = {"path": target[part]}  # the shorthand `init_from: PATH`, spelled out to set a key in it
            target = target.setdefault(part, {})
        else:
            raise ConfigError(not_settable(parts[: i + 1], target, part))
    if append:
        current = target.get(parts[-1], []) if isinstance(target, dict) else None
        if not isinstance(current, list):
            raise ConfigError(Problem(key=dotted, message="+= appends to a list; this key holds no list", file="--set"))
        target[parts[-1]] = current + (value if isinstance(value, list) else [value])
        source.overrides.add(tuple(str(p) for p in (*parts, len(current))))  # the new items came from the command line
        return
    if (isinstance(target, list) and isinstance(parts[-1], int) and parts[-1] < len(target)) or isinstance(target, dict):
        target[parts[-1]] = value
    else:
        raise ConfigError(not_settable(parts, target, parts[-1]))
    source.overrides.add(tuple(str(p) for p in parts))


def not_settable(parts: list[Any], target: Any, part: Any) -> Problem:
    """Why --set can't reach `parts` (its last item `part` inside `target`): an index past a list's end, or a key inside a value."""
    key = format_key(tuple(parts))
    if isinstance(target, list) and isinstance(part, int):
        items = f"{len(target)} item{'s' if len(target) != 1 else ''}"
        return Problem(
            key=key,
            message=f"index {part} is past the end of the list, which has {items}",
            file="--set",
            hint=f"indices go from 0 to {len(target) - 1}; `--set {format_key(tuple(parts[:-1]))}+=VALUE` appends" if target else None,
        )
    held = (
        "a list"
        if isinstance(target, list)
        else f"`{target}`"
        if isinstance(target, (str, int, float, bool)) or target is None
        else "a value"
    )
    return Problem(
        key=key,
        message=f"cannot set a key inside {held}: {format_key(tuple(parts[:-1]))} is no mapping",
        file="--set",
        hint=f"give {format_key(tuple(parts[:-1]))} as a whole instead, e.g. `optimizer: {{Adam: {{learning_rate: 0.01}}}}` for `adam`"
        if isinstance(target, str)
        else None,
    )


def load_config(path: str | Path, overrides: list[str] | None = None, values: dict[str, Any] | None = None) -> Config:
    """Read, override and validate a config file; raise ConfigError listing every problem.

    `values` are set as given, not parsed as YAML: `--name 2024` is the name "2024", not a number.
    """
    data, source = read_config_file(Path(path))  # with the configs it extends merged in and ${VAR}s substituted
    make_config_folder_importable(str(Path(path).resolve().parent))
    return validate_config(data, source, overrides or [], Path(path).resolve().parent, values)


def load_config_text(text: str, path: Path, overrides: list[str] | None = None) -> Config:
    """Validate config text already read (a run folder's, whose bytes were verified), located as `path`."""
    data, source = parse_yaml(text, str(path))
    return validate_config(data, source, overrides or [], Path(path).resolve().parent)


def validate_config(
    data: dict[str, Any], source: SourceMap, overrides: list[str], base_dir: Path, values: dict[str, Any] | None = None
) -> Config:
    """Apply overrides and validate the raw mapping against the schema, then the rules that span sections."""
    apply_overrides(data, overrides, source, values)
    misplaced = deletions(data, ())  # from --set, a sweep's values or a run folder's config: composing took out the files' own
    if misplaced:
        raise ConfigError(
            [
                source.problem(where, f"`{DELETE_TAG}` takes a key out of a base config, only in a config file with `extends:`")
                for where in misplaced
            ]
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, data, source, Config)) from None
    config._source = source
    config._base_dir = base_dir
    collector = Collector()
    for problem in check_across_sections(config):
        collector.add(problem)
    collector.raise_if_any()
    return config


def shrink_for_smoke(config: Config) -> Config:
    """The same experiment cut to one epoch of at most 2 train/validation/test batches, on the CPU, not logged to MLflow."""
    steps = min(config.train.steps_per_epoch or 2, 2)
    return config.model_copy(
        update={
            "train": config.train.model_copy(update={"epochs": 1, "initial_epoch": 0, "steps_per_epoch": steps, "validation_steps": 2}),
            "evaluate": config.evaluate.model_copy(update={"steps": 2}),
            "runtime": config.runtime.model_copy(update={"device": "cpu"}),
            "output": config.output.model_copy(update={"mlflow": None}),  # a throwaway check leaves no run in the MLflow store
        }
    )
