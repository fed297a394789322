"""Read YAML safely and within bounds, and remember where every key and value came from.

The text is composed into a node graph first (libyaml's C parser when present; no Python objects
yet), and the graph is checked before anything is built from it: its depth, its size with every
alias expanded (a "billion laughs" file is a few KB of text and billions of nodes), recursive
aliases and duplicate keys. Only then does YAML's safe constructor build the data — so a hostile or
broken file costs milliseconds and a clear message, never memory, a RecursionError or a silent
last-key-wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # libyaml's C parser, 10-50x faster than the pure-Python one
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as Loader  # type: ignore[assignment]

from kerasrun.errors import ConfigError, Problem

Loc = tuple[Any, ...]
Position = tuple[int, int]

MAX_BYTES = 2_000_000  # a config is a page of YAML; megabytes of it can only be a mistake (or data inlined)
MAX_DEPTH = 64  # nesting levels; kerasrun's own configs use about 8
MAX_NODES = 200_000  # values after expanding every alias; a 2,000-layer model is ~20,000
MERGE_TAG = "tag:yaml.org,2002:merge"
BOOL_TAG, NULL_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"
INT_TAG, FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
# Numbers YAML 1.1 reads as strings: `1e-3`, `1.0e30` (its floats need a dot and a signed exponent).
SCIENTIFIC = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
# Inside a flow mapping or list, YAML reads the `{`, `}` of `${NAME}` (and a default's `,`, `[`, `]`, `:`) as the
# collection's own: `{path: ${DATA}/x.csv}` is a syntax error. While YAML parses, those characters of a one-line
# `${...}` stand in as private-use characters, one for one (so every line and column stays), and each scalar gets
# them back. A span with a quote, `#`, backslash or line break in it is left as written: there they may be YAML's.
SHIELDED_CHARACTERS = "{}[],:"
STAND_INS = "\ue000\ue001\ue002\ue003\ue004\ue005"
SHIELD = str.maketrans(SHIELDED_CHARACTERS, STAND_INS)
UNSHIELD = str.maketrans(STAND_INS, SHIELDED_CHARACTERS)
ANY_STAND_IN = re.compile(f"[{STAND_INS}]")
NOT_SHIELDED = re.compile(r"[\"'#\\\n\r\x85\u2028\u2029]")
DELETE_TAG = "!delete"


class Delete:
    """The value of `key: !delete`: take `key` out of the config this file extends (compose.py); anywhere else an error."""

    def __repr__(self) -> str:
        return DELETE_TAG


DELETE = Delete()


def construct_delete(loader: yaml.SafeLoader, node: yaml.Node) -> Delete:
    """`!delete` stands alone: a value after it would be silently dropped, so it is refused."""
    if not isinstance(node, yaml.ScalarNode) or node.value:
        raise yaml.constructor.ConstructorError(None, None, "`!delete` takes no value: write `key: !delete`", node.start_mark)
    return DELETE


class ConfigLoader(Loader):
    """The safe loader with kerasrun's one tag, `!delete` (a subclass: PyYAML's loaders are shared by every caller)."""


ConfigLoader.add_constructor(DELETE_TAG, construct_delete)


@dataclass
class SourceMap:
    """Maps a path of keys/indices in the loaded YAML to its file position (1-based)."""

    file: str
    positions: dict[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)
    overrides: set[tuple[str, ...]] = field(default_factory=set)
    files: dict[tuple[str, ...], str] = field(default_factory=dict)  # keys a base config (extends) gave: its file
    origins: dict[tuple[str, ...], str] = field(default_factory=dict)  # overridden keys a command option set (`--device`), not --set
    # What a later config of an `extends` chain did to a whole section (switched data.source, say): (its file, the
    # note, whether a problem in that same file gets it too), added to the problems inside the section.
    notes: dict[tuple[str, ...], tuple[str, str, bool]] = field(default_factory=dict)

    def locate(self, loc: Loc) -> tuple[int | None, int | None]:
        """Return (line, column) of the deepest known prefix of `loc`."""
        return self.positions.get(self.known_prefix(loc), (None, None))

    def known_prefix(self, loc: Loc) -> tuple[str, ...]:
        """The deepest prefix of `loc` with a known position (() when none is known)."""
        key = tuple(str(p) for p in loc)
        while key and key not in self.positions:
            key = key[:-1]
        return key

    def file_of(self, loc: Loc) -> str:
        """The file the value at `loc` came from: this config's, or a base config's it extends."""
        return self.files.get(self.known_prefix(loc), self.file)

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> Problem:
        """Build a Problem for `loc`, filling in file, line and column."""
        key = tuple(str(p) for p in loc)
        if any(key[:n] in self.overrides for n in range(1, len(key) + 1)):
            origin = next((self.origins[key[:n]] for n in range(len(key), 0, -1) if key[:n] in self.origins), "--set")
            return Problem(key=format_key(loc), message=message, file=origin, hint=hint)
        line, column = self.locate(loc)
        deeper = sorted(path for path in self.overrides if path[: len(key)] == key)  # --set inside what is reported
        if deeper:
            message += f" (with --set {format_key(tuple(int(p) if p.isdigit() else p for p in deeper[0]))})"
        file = self.file_of(loc)
        for noted in (key[:n] for n in range(len(key), -1, -1)):
            if noted in self.notes and (self.notes[noted][0] != file or self.notes[noted][2]):
                message += f" ({self.notes[noted][1]})"
        return Problem(key=format_key(loc), message=message, file=file, line=line, column=column, hint=hint)


def format_key(loc: Loc) -> str:
    """Return a dotted key such as `model.layers[2].Dense`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class YamlLimitError(Exception):
    """The node graph breaks a limit; carries the message and where (a node or a parser event: both have a start mark)."""

    def __init__(self, message: str, node: yaml.Node | yaml.Event) -> None:
        super().__init__(message)
        self.node = node


def position(node: yaml.Node | yaml.Event) -> Position:
    """1-based (line, column) where a node starts."""
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def children(node: yaml.Node) -> list[yaml.Node]:
    """A node's child nodes: a mapping's keys and values, a sequence's items."""
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_graph(root: yaml.Node) -> None:
    """Refuse a node graph that is recursive, too deep, or too big once its aliases are expanded.

    One post-order pass over the graph as composed — each shared (aliased) node is visited once and
    its expanded size and height are memoised — so the cost is that of the text, not of the expansion.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = children(node)
            size[key] = 1 + sum(size[id(kid)] for kid in kids)
            height[key] = 1 + max((height[id(kid)] for kid in kids), default=0)
            if height[key] > MAX_DEPTH:
                raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep (limit: nesting depth {MAX_DEPTH})", node)
            if size[key] > MAX_NODES:
                raise YamlLimitError(
                    f"expands to more than {MAX_NODES:,} values once its aliases are expanded "
                    f"(limit: {MAX_NODES:,} values; an alias bomb?)",
                    node,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlLimitError("an alias refers to a node that contains it (a recursive alias)", node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in children(node) if id(kid) not in size)
        if len(on_path) > MAX_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep (limit: nesting depth {MAX_DEPTH})", node)


def map_positions(root: yaml.Node, name: str) -> tuple[dict[tuple[str, ...], Position], list[Problem]]:
    """Where each key and item starts, by path, and the problems a walk finds — without expanding aliases.

    The walk is in document order, so a node shared through an alias is reached first where its
    anchor stands, and not walked again: errors inside it are located there. Problems: duplicate
    keys (both places named) and numbers YAML 1.1 reads in a surprising base.
    """
    positions: dict[tuple[str, ...], Position] = {(): position(root)}
    problems: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and (problem := yaml11_number(node, path, name)):
            problems.append(problem)
        children: list[tuple[yaml.Node, tuple[str, ...]]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, Position] = {}
            for key_node, value_node in node.value:
                child = (*path, str(key_node.value))
                if key_node.tag != MERGE_TAG and isinstance(key_node, yaml.ScalarNode):
                    identity = key_identity(key_node)
                    if identity in first:
                        line, column = position(key_node)
                        problems.append(
                            Problem(
                                key=format_key(child),
                                message=f"duplicate key (first at line {first[identity][0]}); YAML allows each key once per mapping",
                                file=name,
                                line=line,
                                column=column,
                                hint="remove one of them",
                            )
                        )
                        continue
                    first[identity] = position(key_node)
                positions.setdefault(child, position(key_node))
                children.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, str(index))
                positions.setdefault(child, position(item))
                children.append((item, child))
        stack.extend(reversed(children))  # popped first to last: document order
    return positions, problems


def key_identity(node: yaml.ScalarNode) -> Any:
    """What a key means, so `true` and `True` (or `null` and `~`) count as the same key."""
    text = str(node.value)
    if node.tag == BOOL_TAG:
        return ("bool", text.lower() in ("yes", "y", "true", "on"))
    if node.tag == NULL_TAG:
        return ("null",)
    return (node.tag, text)


def yaml11_number(node: yaml.ScalarNode, path: tuple[str, ...], name: str) -> Problem | None:
    """A plain number YAML 1.1 reads in base 8 (`017` is 15) or base 60 (`10:30` is 630): almost always a surprise."""
    text = str(node.value)
    if node.style or node.tag not in (INT_TAG, FLOAT_TAG):
        return None  # quoted: text as written
    if OCTAL.match(text) or ":" in text:
        base = "octal (base 8)" if OCTAL.match(text) else "base 60 (hours:minutes)"
        line, column = position(node)
        return Problem(
            key=format_key(path),
            message=f"YAML 1.1 reads {text} as a number in {base}",
            file=name,
            line=line,
            column=column,
            hint=f"write the number without {'the leading 0' if OCTAL.match(text) else 'the colon'}, or quote it for text: '{text}'",
        )
    return None


def read_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    """Load a YAML config file safely and within bounds; return its data and a SourceMap, or raise ConfigError."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        dangling = path.is_symlink()  # exists() is False for a symlink loop too
        raise ConfigError(Problem(key="", message="a symlink that leads to no file (a loop?)" if dangling else "no such file", file=name))
    if path.is_dir():
        raise ConfigError(Problem(key="", message="is a directory, expected a YAML config file", file=name))
    if not path.is_file():  # a FIFO would block the read, a device (/dev/zero) never end it
        raise ConfigError(Problem(key="", message="is not a regular file, expected a YAML config file", file=name))
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # before reading it: a 40 MB "config" is refused without being parsed
            raise ConfigError(Problem(key="", message=too_big(size), file=name))
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(key="", message=f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=name)) from None
    except OSError as exc:
        raise ConfigError(Problem(key="", message=f"cannot read file: {exc.strerror or exc}", file=name)) from None
    return parse_yaml(text, name)


def too_big(size: int) -> str:
    """The message for a file over MAX_BYTES."""
    return f"the file is {size / 1e6:.1f} MB; a config may be at most {MAX_BYTES / 1e6:.0f} MB (limit: file size)"


def count_events(text: str) -> None:
    """Parse events only (libyaml, no nodes) and stop at the first one past the limit."""
    for number, event in enumerate(yaml.parse(text, Loader=Loader)):
        if number > 2 * MAX_NODES:  # a value is one event, a collection two
            raise YamlLimitError(f"holds more than {MAX_NODES:,} values (limit: {MAX_NODES:,} values)", event)


def shield_variables(text: str) -> str:
    """`text` with the flow indicators inside each one-line `${...}` replaced by stand-ins (see STAND_INS); linear time.

    The next `}` and the next character that stops shielding are each found once and reused, as `variables` in
    compose.py does, so a text of many unclosed `${` costs one pass.
    """
    if "${" not in text or ANY_STAND_IN.search(text):  # a text holding the stand-ins already is parsed as written
        return text
    parts: list[str] = []
    copied = 0
    close = stop = -1  # the next `}` / character that stops shielding, at or after the current `{` (len(text): none)
    start = text.find("${")
    while start >= 0:
        brace = start + 1
        if close < brace:
            found = text.find("}", brace)
            close = found if found >= 0 else len(text)
        if close == len(text):  # no `}` after this `${`: none after a later one either
            break
        if stop < brace:
            match = NOT_SHIELDED.search(text, brace)
            stop = match.start() if match else len(text)
        if stop < close:
            start = text.find("${", brace + 1)
            continue
        parts += [text[copied:brace], text[brace : close + 1].translate(SHIELD)]
        copied = close + 1
        start = text.find("${", copied)
    return "".join(parts) + text[copied:] if parts else text


def unshield(root: yaml.Node) -> None:
    """Give every scalar in the graph its shielded characters back (each node once: an alias shares its anchor's node)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            node.value = node.value.translate(UNSHIELD)
        stack.extend(children(node))


def load_yaml_value(text: str, name: str) -> tuple[Any, dict[tuple[str, ...], Position], list[Problem]]:
    """Any YAML document, bounded as configs are: (data, positions, duplicate-key problems); raises ConfigError."""
    if len(text) > MAX_BYTES:
        raise ConfigError(Problem(key="", message=too_big(len(text)), file=name))
    shielded = shield_variables(text)  # `${VAR}` inside a flow mapping or list
    loader = ConfigLoader(shielded)
    try:
        count_events(shielded)  # a flat list of a million values is refused after 400,000 events, not composed
        root = loader.get_single_node()  # nodes only: no Python object is built yet
        if root is None:
            return None, {}, []
        check_graph(root)
        if shielded is not text:
            unshield(root)
        positions, problems = map_positions(root, name)
        return loader.construct_document(root), positions, problems
    except YamlLimitError as exc:
        line, column = position(exc.node)
        raise ConfigError(Problem(key="", message=str(exc), file=name, line=line, column=column)) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (Python's int conversion limit)
        raise ConfigError(Problem(key="", message=f"a value YAML can't turn into Python: {exc}", file=name)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc}" + (f" ({exc.context})" if exc.context else "")
        # A tag ends at a space: `{key: !delete}` reads `!delete}` as the tag, and YAML's message doesn't say so.
        lines = text.splitlines()
        tagged = mark is not None and mark.line < len(lines) and lines[mark.line][: mark.column].endswith(DELETE_TAG)
        hint = f"put a space after {DELETE_TAG}: `{{key: {DELETE_TAG} }}`" if tagged else None
        raise ConfigError(
            Problem(
                key="",
                message=message,
                file=name,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
                hint=hint,
            )
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(key="", message=f"YAML error: {exc}", file=name)) from None
    finally:
        loader.dispose()


def parse_yaml(text: str, name: str) -> tuple[Any, SourceMap]:
    """Parse config text (bounded, safe constructors only) and map its positions; every duplicate key is an error."""
    data, positions, duplicates = load_yaml_value(text, name)
    if duplicates:
        raise ConfigError(duplicates)
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
    return data, SourceMap(file=name, positions=positions)
