"""Config composition: `extends:` base configs deep-merged under a config, and `${VAR}` / `${VAR:-default}` from the environment.

Every key keeps the file, line and column it came from through the merge, so a problem in a value a
base config gave is reported in the base config. A section of another kind — another `data.source`,
an object spec naming another class — replaces the base's instead of merging into it, and
`key: !delete` takes a key of the base out. Only configs a user runs are composed: a run
folder's `config.yaml` is already the merged, substituted result and is read as it is.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerasrun.config.sources import path_fields
from kerasrun.config.spec import is_named_object
from kerasrun.config.urls import url_of
from kerasrun.config.yamlsource import DELETE, DELETE_TAG, MAX_BYTES, SourceMap, format_key, load_yaml_value, read_yaml
from kerasrun.errors import ConfigError, Problem

MAX_EXTENDS_DEPTH = 8  # a base of a base of ...: deeper chains are a loop or a maze
# Config files read for one config, a base extended twice counting twice: the transfer-learning chain
# in configs/ reads 3, and 8 bases of 8 bases of ... (8**7 reads) would otherwise run for hours.
MAX_EXTENDS_FILES = 64
# ${ and $${: where a variable may start. The rest is scanned by hand (`substitute`), in one pass.
VARIABLE_START = re.compile(r"\$\$\{|\$\{")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A key that names a class: `Dense`, `SGD`, or an import path `pkg.module:Name`. Input, feature and output
# names are lowercase words by convention, so `{image: {...}}` keeps merging key by key.
CLASS_NAME = re.compile(r"^(?:[A-Za-z_][\w.]*:)?[A-Za-z_]\w*$")
# Where the schema reads a one-key mapping as an object spec whatever its case (`{adam: {...}}`); a per-output
# mapping's values (compile.loss.<output>, compile.metrics.<output>) too.
SPEC_KEYS = (("compile", "optimizer"), ("compile", "loss"))
PER_OUTPUT_KEYS = (("compile", "loss"), ("compile", "metrics"), ("compile", "weighted_metrics"))


@dataclass
class Budget:
    """What composing one config may still read: files and bytes, summed over every base (as the YAML loader bounds one file)."""

    files: int = MAX_EXTENDS_FILES
    bytes: int = MAX_BYTES

    def spend(self, path: Path, source: SourceMap, where: tuple[Any, ...]) -> None:
        """Count `path` (named at `where` in `source`) against the budget; ConfigError once it is spent."""
        try:
            size = path.stat().st_size
        except OSError:
            size = 0  # read_yaml says why it cannot be read
        self.files -= 1
        self.bytes -= size
        if self.files < 0:
            raise ConfigError(
                source.problem(
                    where,
                    f"extends reads more than {MAX_EXTENDS_FILES} config files in all, counting a base each time it is extended "
                    f"(limit: extends files {MAX_EXTENDS_FILES})",
                    "extend fewer bases, or merge bases into one file",
                )
            )
        if self.bytes < 0:
            raise ConfigError(
                source.problem(
                    where,
                    f"the config and its bases hold more than {MAX_BYTES / 1e6:.0f} MB of YAML in all, counting a base each time it "
                    f"is extended (limit: extends size {MAX_BYTES / 1e6:.0f} MB)",
                )
            )


def read_config_file(path: Path) -> tuple[dict[str, Any], SourceMap]:
    """A config file with its base configs merged in and environment variables substituted; every problem at once."""
    data, source = compose(path, (), Budget())
    problems = interpolate(data, source, (), [MAX_BYTES])
    if problems:
        raise ConfigError(problems)
    return data, source


def resolved(path: Path, source: SourceMap, where: tuple[Any, ...]) -> Path:
    """`path` with its symlinks resolved; a symlink loop is a located ConfigError (pathlib raises RuntimeError)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        raise ConfigError(
            source.problem(where, f"{path} cannot be resolved: {exc}", "point extends at a config file, not a symlink loop")
        ) from None


def compose(path: Path, chain: tuple[Path, ...], budget: Budget | None = None) -> tuple[dict[str, Any], SourceMap]:
    """`path`'s mapping over its `extends:` bases (in order, later wins), merged key by key, within `budget`."""
    budget = budget if budget is not None else Budget()
    data, source = read_yaml(path)  # a file over the size of one config is refused here, as itself
    if not chain:  # the top config counts too; each base is counted by the config that names it, where it is named
        budget.spend(path, source, ())
    if "extends" not in data:
        misplaced = [
            source.problem(where, f"`{DELETE_TAG}` takes a key out of the config a file extends, and this file extends none", DELETE_HINT)
            for where in deletions(data, ())
        ]
        if misplaced:
            raise ConfigError(misplaced)
        return data, source
    bases = data.pop("extends")
    loc: tuple[Any, ...] = ("extends",)
    listed = isinstance(bases, list)  # positions are known per item
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(source.problem(loc, "expected a config file to extend, or a list of them", "extends: base.yaml"))
    here = resolved(path, source, ())
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(source.problem(loc, f"more than {MAX_EXTENDS_DEPTH} levels of extends (limit: extends depth)"))
    merged: dict[str, Any] = {}
    merged_source = SourceMap(file=source.file)
    problems: list[Problem] = []
    for index, base in enumerate(bases):
        where = (*loc, index) if listed else loc
        base_path = path.parent / Path(base).expanduser()  # named as written, relative to this config's folder
        target = resolved(base_path, source, where)
        if target == here or target in chain:
            raise ConfigError(source.problem(where, f"{base} extends itself (through {' → '.join(p.name for p in (*chain, here))})"))
        if not base_path.is_file():
            raise ConfigError(source.problem(where, f"no such config file: {base_path}"))
        budget.spend(base_path, source, where)
        base_data, base_source = compose(base_path, (*chain, here), budget)
        make_paths_absolute(base_data, base_path.parent.resolve())
        merge_into(merged, merged_source, base_data, base_source, (), problems)
    merge_into(merged, merged_source, data, source, (), problems)
    if problems:
        raise ConfigError(problems)
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
    if isinstance(value, str) and value and "${" not in value and not url_of(value) and not Path(value).expanduser().is_absolute():
        parent[key] = str(folder / value)


def merge_into(
    base: dict[str, Any],
    base_source: SourceMap,
    over: dict[str, Any],
    over_source: SourceMap,
    prefix: tuple[str, ...],
    problems: list[Problem],
) -> None:
    """Deep-merge `over` into `base`: mappings key by key unless `over` switches the kind (`switch`), anything else replaced.

    Positions follow the values; `key: !delete` in `over` takes `key` out of `base`, and deleting a key
    `base` lacks is a problem added to `problems`.
    """
    given = list(base)  # the keys the bases gave, for did-you-mean (the loop adds this config's own)
    for key, value in over.items():
        path = (*prefix, str(key))
        current = base.get(key)
        if value is DELETE:
            if key in base:
                forget(base_source, base.pop(key), path)
            else:
                problems.append(not_in_base(over_source, path, given))
            continue
        switched = switch(path, current, value)
        if isinstance(value, dict) and isinstance(current, dict) and switched is None:
            copy_position(base_source, over_source, path)
            note_discriminator(base_source, over_source, path, current, value)
            merge_into(current, base_source, value, over_source, path, problems)
            continue
        if key in base:
            forget(base_source, current, path)
        base[key] = drop_deletions(value, current, path, over_source, problems)
        for known in paths_under(base[key], path):
            copy_position(base_source, over_source, known)
        for noted in [noted for noted in over_source.notes if noted[: len(path)] == path]:  # a base's notes come with its values
            base_source.notes[noted] = over_source.notes[noted]
        if switched is not None:
            base_source.notes[path] = (over_source.file_of(path), switched, True)


def forget(source: SourceMap, value: Any, path: tuple[str, ...]) -> None:
    """Drop the positions (and notes) of `value` at `path`, which is replaced or deleted."""
    # The positions under a key are those of the values under it: walking the values (not every
    # position of the map for every key) keeps a merge of 64 wide bases linear.
    for stale in paths_under(value, path):
        source.positions.pop(stale, None)
        source.files.pop(stale, None)
    for noted in [noted for noted in source.notes if noted[: len(path)] == path]:  # one per data section at most
        del source.notes[noted]


def object_name(value: dict[str, Any], any_name: bool) -> tuple[str, str] | None:
    """(form, class) of a mapping that is an object spec — Keras's `{class_name: ...}`, or `{Name: {kwargs}}` when the key names a class."""
    if "class_name" in value:
        return "class_name", str(value["class_name"])
    if is_named_object(value):
        ((name, _),) = value.items()
        if any_name or (CLASS_NAME.match(name) and (name[:1].isupper() or ":" in name)):
            return "named", name
    return None


def switch(path: tuple[str, ...], current: Any, value: Any) -> str | None:
    """Why `value` replaces the mapping `current` at `path` instead of merging into it (a note for its problems), or None.

    A section's kind decides which keys it may hold: the base's tfrecord keys are wrong under an npz
    source, Adam's arguments wrong for SGD. So another `data.source`, or an object spec naming another
    class, starts the section afresh.
    """
    if not isinstance(current, dict) or not isinstance(value, dict):
        return None
    if path == ("data",):
        if "source" in current and "source" in value and current["source"] != value["source"]:
            return f"`source: {value['source']}` replaces the whole `data` section of source {current['source']}: none of its keys are kept"
        return None
    any_name = path in SPEC_KEYS or (len(path) == 3 and path[:2] in PER_OUTPUT_KEYS)
    old, new = object_name(current, any_name), object_name(value, any_name)
    if old is not None and new is not None and old != new:
        return f"{new[1]} replaces {old[1]} whole: none of {old[1]}'s arguments are kept"
    return None


def note_discriminator(
    target: SourceMap, over_source: SourceMap, path: tuple[str, ...], current: dict[str, Any], value: dict[str, Any]
) -> None:
    """A later config naming the data source of a base's section that named none: the base's keys are read under it, so say where it was named."""
    if path == ("data",) and "source" in value and "source" not in current:
        line, column = over_source.locate((*path, "source"))
        where = ":".join(str(part) for part in (over_source.file_of((*path, "source")), line, column) if part is not None)
        target.notes[path] = (over_source.file_of((*path, "source")), f"with `data.source: {value['source']}` from {where}", False)


def drop_deletions(value: Any, current: Any, path: tuple[str, ...], source: SourceMap, problems: list[Problem]) -> Any:
    """`value` without its `!delete`s: inside a value that replaces `current` whole, a deleted key is gone already, if `current` had it."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if item is DELETE:
                if not (isinstance(current, dict) and key in current):
                    problems.append(not_in_base(source, (*path, str(key)), current if isinstance(current, dict) else None))
                continue
            kept[key] = drop_deletions(item, current.get(key) if isinstance(current, dict) else None, (*path, str(key)), source, problems)
        return kept
    if isinstance(value, list):
        for index, item in enumerate(value):
            if item is DELETE:
                problems.append(
                    source.problem(
                        (*path, index),
                        f"`{DELETE_TAG}` takes out a key, not a list item: a list is replaced whole",
                        "write the list as it should be",
                    )
                )
        return [drop_deletions(item, None, (*path, str(index)), source, problems) for index, item in enumerate(value) if item is not DELETE]
    return value


DELETE_HINT = f"`key: {DELETE_TAG}` goes in a config with `extends:`, under a key one of its bases gives"


def not_in_base(source: SourceMap, path: tuple[str, ...], parent: dict[str, Any] | list[Any] | None) -> Problem:
    """`!delete` of a key the configs extended do not give: the key (or the mapping holding it) is misspelled or misplaced."""
    key = path[-1]
    if parent is None:
        return source.problem(
            path,
            f"`{DELETE_TAG}`: the configs this file extends have no `{format_key(path[:-1])}` to delete `{key}` from",
            DELETE_HINT,
        )
    close = difflib.get_close_matches(key, [str(name) for name in parent], n=1, cutoff=0.6)
    there = ", ".join(sorted(str(name) for name in parent)[:20]) or "none"
    hint = (f"did you mean `{close[0]}`? " if close else "") + f"Keys there: {there}"
    return source.problem(path, f"`{DELETE_TAG}`: the configs this file extends have no `{format_key(path)}`", hint)


def deletions(value: Any, path: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Where `!delete` stands in `value` (keys and list items)."""
    if value is DELETE:
        return [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [found for key, item in items for found in deletions(item, (*path, key))]


def paths_under(value: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """`path` and the path of every key and item inside `value`, as a SourceMap names them."""
    found: list[tuple[str, ...]] = []
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        found.append(where)
        if isinstance(item, dict):
            stack.extend((child, (*where, str(name))) for name, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*where, str(index))) for index, child in enumerate(item))
    return found


def copy_position(target: SourceMap, source: SourceMap, key: tuple[str, ...]) -> None:
    """Record where `key` is in `source` (its file too) in `target`."""
    if key in source.positions:
        target.positions[key] = source.positions[key]
        target.files[key] = source.file_of(key)


def interpolate(value: Any, source: SourceMap, loc: tuple[Any, ...], room: list[int]) -> list[Problem]:
    """Substitute ${VAR} / ${VAR:-default} in every string, in place; a string that is one variable becomes a YAML value.

    `room` holds how many characters substitution may still add, over the whole config: a 120 kB
    variable used in a thousand places is refused like a 120 MB file would be.
    """
    problems: list[Problem] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in list(items):
        if isinstance(item, str) and "${" in item:
            try:
                value[key] = substitute(item, room)
            except ValueError as exc:
                message, name = exc.args
                hint = f"export it, or give a default: ${{{name}:-value}}" if name is not None else None
                problems.append(source.problem((*loc, key), message, hint))
                if name is None:  # over the size limit: every later string would say the same
                    return problems
        elif isinstance(item, (dict, list)):
            problems += interpolate(item, source, (*loc, key), room)
            if room[0] < 0:
                return problems
    return problems


def variables(text: str) -> list[tuple[int, int, str | None, str | None]]:
    """Each `${NAME}`, `${NAME:-default}` and `$${` in `text` as (start, end, name, default); `$${` has name None.

    Read as a regex would (a name holds no `}` or `:`, a default no `}`; left to right), but in one pass:
    the next `}` and `:` are found once and reused, so a text of many unclosed `${` is linear, not quadratic.
    """
    found: list[tuple[int, int, str | None, str | None]] = []
    close = colon = -1  # the next `}` / `:` at or after the current start (-2: none left)
    position = 0
    while (match := VARIABLE_START.search(text, position)) is not None:
        start = match.start()
        if match.group(0) == "$${":
            found.append((start, match.end(), None, None))
            position = match.end()
            continue
        body = start + 2
        if close != -2 and close < body:
            close = text.find("}", body)
            close = -2 if close < 0 else close
        if close == -2:  # no `}` after this one: no later `${` closes either (each costs one look); `$${` still counts
            position = body
            continue
        if colon != -2 and colon < body:
            colon = text.find(":", body)
            colon = -2 if colon < 0 else colon
        if colon == -2 or colon > close:
            found.append((start, close + 1, text[body:close], None))
            position = close + 1
        elif text.startswith(":-", colon):
            found.append((start, close + 1, text[body:colon], text[colon + 2 : close]))
            position = close + 1
        else:
            position = body  # `${a:b}` is not a variable; a `${` inside it may be
    return found


def substitute(text: str, room: list[int] | None = None) -> Any:
    """`text` with its variables replaced; the YAML value when `text` is exactly one variable (`epochs: ${EPOCHS}` is a number)."""
    room = room if room is not None else [MAX_BYTES]
    found = variables(text)
    parts: list[str] = []
    position = 0
    for start, end, name, default in found:
        parts.append(text[position:start])
        position = end
        if name is None:
            parts.append("${")
            continue
        if not NAME.match(name):
            shown = name if len(name) <= 40 else f"{name[:40]}…"  # a name is a word; a page of text was no name
            raise ValueError(f"`${{{shown}}}` is not a variable name (letters, digits and _)", shown)
        value = os.environ.get(name, default)
        if value is None:
            raise ValueError(f"environment variable {name} is not set", name)
        room[0] -= len(value)
        if room[0] < 0:
            raise ValueError(
                f"substituting ${{{name}}} takes the config past {MAX_BYTES / 1e6:.0f} MB of text in all "
                f"(limit: file size {MAX_BYTES / 1e6:.0f} MB, with every variable substituted)",
                None,
            )
        parts.append(value)
    parts.append(text[position:])
    result = "".join(parts)
    if len(found) == 1 and found[0][:2] == (0, len(text)) and found[0][2] is not None:
        if result.lstrip()[:1] in ("[", "{"):  # a flow collection would be parsed only to stay text (below): it stays text now
            return result
        try:
            parsed, _, problems = load_yaml_value(result, "${...}")
        except ConfigError:  # not a YAML value on its own (e.g. "a: b: c"): it stays text
            return result
        if result and not problems and not isinstance(parsed, (dict, list)) and parsed is not DELETE:  # `!delete` deletes in files only
            return parsed
    return result
