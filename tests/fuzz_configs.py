"""Seeded mutations of the configs in configs/: what a hurried or hostile user could write.

Deterministic (a fixed seed), so a failure names a mutation that can be replayed:
`python -c "from fuzz_configs import mutations; print(dict(mutations())['<id>'])"` from tests/.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import yaml
from helpers import REPO

# Configs that train in about a second from data on this machine (no MNIST-sized loading, no init_from run).
FAST_CONFIGS = [
    "digits_mlp",
    "digits_custom_objects",
    "digits_denoising_custom_step",
    "breast_cancer_weighted_bce",
    "linear_classifier",
    "multi_io",
]
WRONG_VALUES: list[Any] = [
    True,
    False,
    None,
    0,
    -1,
    3.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    10**30,
    2**63,
    "",
    "text",
    "1e-3",
    "déjà vu ☃",
    [],
    [1, 2],
    {},
    {"a": 1},
    "x" * 300,
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path and list index path in a nested config."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def parent_of(config: Any, path: tuple[Any, ...]) -> Any:
    """The container that holds `path`'s last element."""
    node = config
    for part in path[:-1]:
        node = node[part]
    return node


def mutate(config: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """One mutation of a config: (description, YAML text)."""
    config = copy.deepcopy(config)
    path = rng.choice(list(paths(config)))
    parent, last = parent_of(config, path), path[-1]
    kind = rng.choice(["delete", "wrong", "wrong", "wrong", "wrap", "unwrap", "unknown", "deep", "rename", "text"])
    dotted = ".".join(str(p) for p in path)
    if kind == "delete":
        del parent[last]
        return f"delete {dotted}", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    if kind == "wrong":
        value = rng.choice(WRONG_VALUES)
        parent[last] = value
        return f"{dotted} = {value!r:.40}", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    if kind == "wrap":
        parent[last] = [parent[last]]
        return f"{dotted} in a list", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    if kind == "unwrap":
        value = parent[last]
        parent[last] = {"k": value} if not isinstance(value, dict) else list(value.values())
        return f"{dotted} swapped list/mapping", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    if kind == "unknown":
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, dict):
            target["unknwon_key"] = 1
        return f"unknown key under {dotted}", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    if kind == "deep":
        nested: Any = 1
        for _ in range(rng.choice([10, 70, 300])):
            nested = [nested]
        parent[last] = nested
        return f"{dotted} deeply nested", yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=10**9)
    if kind == "rename" and isinstance(parent, dict):
        parent[f"{last}é"] = parent.pop(last)
        return f"{dotted} renamed with unicode", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    lines = text.splitlines()
    index = rng.randrange(len(lines))
    edit = rng.choice(["duplicate", "drop", "garble", "bomb", "alias-loop", "tab"])
    if edit == "duplicate":
        lines.insert(index, lines[index])
    elif edit == "drop":
        del lines[index]
    elif edit == "garble":
        lines[index] = lines[index][: len(lines[index]) // 2] + ": [{"
    elif edit == "bomb":
        lines += ['lol: &a ["l","l","l","l","l","l","l","l","l","l"]'] + [
            f"lol{i}: &a{i} [" + ", ".join([f"*{'a' if i == 1 else f'a{i - 1}'}"] * 10) + "]" for i in range(1, 9)
        ]
    elif edit == "alias-loop":
        lines += ["loop: &loop", "  again: *loop"]
    else:
        lines[index] = "\t" + lines[index]
    return f"text: {edit} line {index + 1}", "\n".join(lines) + "\n"


def mutations(count: int = 330, seed: int = 20261125) -> list[tuple[str, str]]:
    """`count` mutations, spread over the fast configs, plus whole-file oddities; (id, YAML text)."""
    rng = random.Random(seed)
    configs = {name: yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()) for name in FAST_CONFIGS}
    out = [
        ("empty", ""),
        ("a list", "- 1\n- 2\n"),
        ("a scalar", "42\n"),
        ("binary", "\x00\x01\x02 name: x\n"),
        ("only a comment", "# nothing\n"),
        ("two documents", "name: a\n---\nname: b\n"),
    ]
    for index in range(count - len(out)):
        name = FAST_CONFIGS[index % len(FAST_CONFIGS)]
        description, text = mutate(configs[name], rng)
        out.append((f"{index:03d}-{name}: {description}", text))
    return out
