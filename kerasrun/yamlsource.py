"""Read YAML with `safe_load` and remember where every key and value came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kerasrun.errors import ConfigError, Problem

Loc = tuple[Any, ...]


@dataclass
class SourceMap:
    """Maps a path of keys/indices in the loaded YAML to its file position (1-based)."""

    file: str
    positions: dict[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)
    overrides: set[tuple[str, ...]] = field(default_factory=set)

    def locate(self, loc: Loc) -> tuple[int | None, int | None]:
        """Return (line, column) of the deepest known prefix of `loc`."""
        key = tuple(str(p) for p in loc)
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return self.positions.get((), (None, None))

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> Problem:
        """Build a Problem for `loc`, filling in file, line and column."""
        key = tuple(str(p) for p in loc)
        if any(key[:n] in self.overrides for n in range(1, len(key) + 1)):
            return Problem(key=format_key(loc), message=message, file="--set", hint=hint)
        line, column = self.locate(loc)
        return Problem(key=format_key(loc), message=message, file=self.file, line=line, column=column, hint=hint)


def format_key(loc: Loc) -> str:
    """Return a dotted key such as `model.layers[2].Dense`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def record_positions(node: yaml.Node, path: tuple[str, ...], positions: dict[tuple[str, ...], tuple[int, int]]) -> None:
    """Walk a composed YAML node tree and note where each key or item starts."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (str(key_node.value),)
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            record_positions(value_node, child, positions)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = path + (str(index),)
            positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            record_positions(item, child, positions)


def read_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    """Load a YAML file with safe_load; return its data and a SourceMap, or raise ConfigError."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ConfigError(Problem(key="", message="no such file", file=name))
    if path.is_dir():
        raise ConfigError(Problem(key="", message="is a directory, expected a YAML config file", file=name))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(key="", message=f"cannot read file: {exc}", file=name)) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> tuple[Any, SourceMap]:
    """Parse YAML text (safe_load) and map its positions."""
    source = SourceMap(file=name)
    try:
        data = yaml.safe_load(text)
        # compose() builds nodes only (no Python objects), so it is as safe as safe_load.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        message = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            message += f" ({exc.context})"
        raise ConfigError(Problem(key="", message=message, file=name, line=line, column=column)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(key="", message=f"YAML error: {exc}", file=name)) from None
    if root is not None:
        source.positions[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
        record_positions(root, (), source.positions)
    if data is None:
        raise ConfigError(
            Problem(
                key="", message="the file is empty; expected a mapping with name, data, model, compile, train", file=name, line=1, column=1
            )
        )
    if not isinstance(data, dict):
        raise ConfigError(
            Problem(key="", message=f"the top level must be a mapping of sections, got {type(data).__name__}", file=name, line=1, column=1)
        )
    return data, source
