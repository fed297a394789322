"""Config composition: `extends:` base configs deep-merged under a config, and `${VAR}` / `${VAR:-default}` from the environment.

Every key keeps the file, line and column it came from through the merge, so a problem in a value a
base config gave is reported in the base config. Only configs a user runs are composed: a run
folder's `config.yaml` is already the merged, substituted result and is read as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from kerasrun.config.data import path_fields
from kerasrun.config.yamlsource import SourceMap, load_yaml_value, read_yaml
from kerasrun.errors import ConfigError, Problem

MAX_EXTENDS_DEPTH = 8  # a base of a base of ...: deeper chains are a loop or a maze
# ${NAME}, ${NAME:-default}, and $${ for a literal ${.
VARIABLE = re.compile(r"\$\$\{|\$\{([^}:]*)(?::-([^}]*))?\}")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_config_file(path: Path) -> tuple[dict[str, Any], SourceMap]:
    """A config file with its base configs merged in and environment variables substituted; every problem at once."""
    data, source = compose(path, ())
    problems = interpolate(data, source, ())
    if problems:
        raise ConfigError(problems)
    return data, source


def compose(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], SourceMap]:
    """`path`'s mapping over its `extends:` bases (in order, later wins), merged key by key."""
    data, source = read_yaml(path)
    if "extends" not in data:
        return data, source
    bases = data.pop("extends")
    loc: tuple[Any, ...] = ("extends",)
    listed = isinstance(bases, list)  # positions are known per item
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(source.problem(loc, "expected a config file to extend, or a list of them", "extends: base.yaml"))
    here = path.resolve()
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(source.problem(loc, f"more than {MAX_EXTENDS_DEPTH} levels of extends (limit: extends depth)"))
    merged: dict[str, Any] = {}
    merged_source = SourceMap(file=source.file)
    for index, base in enumerate(bases):
        where = (*loc, index) if listed else loc
        base_path = path.parent / Path(base).expanduser()  # named as written, relative to this config's folder
        if base_path.resolve() == here or base_path.resolve() in chain:
            raise ConfigError(source.problem(where, f"{base} extends itself (through {' → '.join(p.name for p in (*chain, here))})"))
        if not base_path.is_file():
            raise ConfigError(source.problem(where, f"no such config file: {base_path}"))
        base_data, base_source = compose(base_path, (*chain, here))
        make_paths_absolute(base_data, base_path.parent.resolve())
        merge_into(merged, merged_source, base_data, base_source, ())
    merge_into(merged, merged_source, data, source, ())
    return merged, merged_source


def make_paths_absolute(data: dict[str, Any], folder: Path) -> None:
    """Relative file paths in a base config (its data source's path fields, `model.init_from`), made absolute against the base config's folder."""
    section = data.get("data")
    if isinstance(section, dict):
        for key in path_fields(section.get("source")):
            make_absolute(section, key, folder)  # a path, or a glob (a list of globs stays as written)
    model = data.get("model")
    if isinstance(model, dict):
        if isinstance(model.get("init_from"), dict):
            make_absolute(model["init_from"], "path", folder)
        else:
            make_absolute(model, "init_from", folder)  # the shorthand `init_from: PATH`


def make_absolute(parent: dict[str, Any], key: str, folder: Path) -> None:
    """`parent[key]`, when it is a relative path, made absolute against `folder`; `${VAR}`s are substituted later, so they stay."""
    value = parent.get(key)
    if isinstance(value, str) and value and "${" not in value and not Path(value).expanduser().is_absolute():
        parent[key] = str(folder / value)


def merge_into(base: dict[str, Any], base_source: SourceMap, over: dict[str, Any], over_source: SourceMap, prefix: tuple[str, ...]) -> None:
    """Deep-merge `over` into `base`: mappings key by key, anything else (lists too) replaced; positions follow the values."""
    for key, value in over.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            copy_position(base_source, over_source, path)
            merge_into(base[key], base_source, value, over_source, path)
            continue
        base[key] = value
        for stale in [k for k in base_source.positions if k[: len(path)] == path]:
            del base_source.positions[stale]
            base_source.files.pop(stale, None)
        for known in [k for k in over_source.positions if k[: len(path)] == path]:
            copy_position(base_source, over_source, known)


def copy_position(target: SourceMap, source: SourceMap, key: tuple[str, ...]) -> None:
    """Record where `key` is in `source` (its file too) in `target`."""
    if key in source.positions:
        target.positions[key] = source.positions[key]
        target.files[key] = source.file_of(key)


def interpolate(value: Any, source: SourceMap, loc: tuple[Any, ...]) -> list[Problem]:
    """Substitute ${VAR} / ${VAR:-default} in every string, in place; a string that is one variable becomes a YAML value."""
    problems: list[Problem] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in list(items):
        if isinstance(item, str) and "${" in item:
            try:
                value[key] = substitute(item)
            except ValueError as exc:
                message, name = exc.args
                problems.append(source.problem((*loc, key), message, f"export it, or give a default: ${{{name}:-value}}"))
        elif isinstance(item, (dict, list)):
            problems += interpolate(item, source, (*loc, key))
    return problems


def substitute(text: str) -> Any:
    """`text` with its variables replaced; the YAML value when `text` is exactly one variable (`epochs: ${EPOCHS}` is a number)."""
    whole = VARIABLE.fullmatch(text)

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if not NAME.match(name):
            raise ValueError(f"`${{{name}}}` is not a variable name (letters, digits and _)", name)
        found = os.environ.get(name, default)
        if found is None:
            raise ValueError(f"environment variable {name} is not set", name)
        return found

    result = VARIABLE.sub(replace, text)
    if whole is not None and whole.group(0) != "$${":
        try:
            parsed, _, problems = load_yaml_value(result, "${...}")
        except ConfigError:  # not a YAML value on its own (e.g. "a: b: c"): it stays text
            return result
        if result and not problems and not isinstance(parsed, (dict, list)):
            return parsed
    return result
