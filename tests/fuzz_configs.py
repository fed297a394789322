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
    "diabetes_normalization",
    "digits_lr_schedule",
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


def mutations(count: int = 520, seed: int = 20261125) -> list[tuple[str, str]]:
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


# --------------------------------------------------------------------------- labelled cases

# A table for the CSV cases: features a, b, a text column, a weight column and an integer label.
TABLE = "a,b,word,w,label\n" + "".join(f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{'xyz'[i % 3]},1.0,{i % 3}\n" for i in range(60))
CSV = {"source": "csv", "path": "table.csv", "target": "label", "features": ["a", "b"], "test_fraction": 0.2}
RANDOM = {"source": "synthetic", "generator": "random", "x_shape": [2], "classes": 3, "samples": 60, "test_fraction": 0.2}


def invalid_cases() -> list[tuple[str, dict[str, Any], list[str], str]]:
    """Configs that are wrong, each labelled: (id, changed sections, CLI arguments, where the error points).

    `data` and `model` replace the tiny experiment's sections; the others are merged into them. `TMP` in an
    argument stands for the test's folder.

    Every one must be refused with exit 2 — by `validate` or, where only data or a built model can
    tell, by `train` before a run folder exists — never trained, never a traceback (#23 parts 3 to 5).
    """
    tiny_layers = [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]
    blobs = {"source": "synthetic", "generator": "blobs", "means": [[0, 0], [4, 0], [0, 4]], "samples_per_class": 20}
    return [
        ("per-output metrics on one output", {"compile": {"metrics": [["accuracy"], ["mse"]]}}, [], "compile.metrics"),
        ("a null metric", {"compile": {"metrics": [None]}}, [], "compile.metrics"),
        ("AUC weighted metric on a 3-class softmax", {"compile": {"weighted_metrics": ["AUC"]}}, [], "compile.weighted_metrics[0]: train"),
        ("csv target among the features", {"data": {**CSV, "features": ["a", "b", "label"]}}, [], "data."),
        ("csv target naming no output", {"data": {**CSV, "target": {"nope": "label"}}}, [], "data.target.nope"),
        ("csv sample_weight is the text target", {"data": {**CSV, "target": "word", "sample_weight": "word"}}, [], "data.sample_weight"),
        ("cast to object", {"data": {**RANDOM, "preprocess": [{"cast": "object"}]}}, [], "data.preprocess"),
        ("synthetic 2^31 samples", {"data": {**RANDOM, "samples": 2**31 - 1}}, [], "data."),
        ("synthetic shape -1", {"data": {**RANDOM, "x_shape": [-1]}}, [], "data.x_shape"),
        ("synthetic 0 classes", {"data": {**RANDOM, "classes": 0}}, [], "data.classes"),
        ("cast to complex64", {"data": {**RANDOM, "preprocess": [{"cast": "complex64"}]}}, [], "data.preprocess"),
        ("scale as a string", {"data": {**RANDOM, "preprocess": [{"scale": "16"}]}}, [], "data.preprocess"),
        ("column_types names no column", {"data": {**CSV, "column_types": {"nope": "float32"}}}, [], "data.column_types"),
        ("csv sample_weight is also a feature", {"data": {**CSV, "sample_weight": "a"}}, [], "data."),
        ("test_fraction with test_path", {"data": {**CSV, "test_path": "table.csv"}}, [], "data."),
        ("cov not positive semi-definite", {"data": {**blobs, "cov": [[1, 2], [2, 1]]}}, [], "data.cov"),
        ("Dense units true", {"model": {"inputs": {"x": [2]}, "layers": [{"Dense": {"units": True}}, tiny_layers[1]]}}, [], "model.layers"),
        ("no outputs", {"model": {"inputs": {"x": [2]}, "layers": tiny_layers, "outputs": []}}, [], "model.outputs"),
        ("monitor a metric never logged", {"train": {"callbacks": [{"EarlyStopping": {"monitor": "val_losss"}}]}}, [], "train.callbacks"),
        ("a misspelled mode", {"train": {"callbacks": [{"EarlyStopping": {"monitor": "val_loss", "mode": "mxa"}}]}}, [], "train.callbacks"),
        (
            "ModelCheckpoint below /dev/null",
            {"train": {"callbacks": [{"ModelCheckpoint": {"filepath": "/dev/null/m.keras"}}]}},
            [],
            "train.callbacks",
        ),
        ("a number as schedule", {"train": {"callbacks": [{"LearningRateScheduler": {"schedule": 0.1}}]}}, [], "train.callbacks"),
        (
            "an empty CSV separator",
            {"train": {"callbacks": [{"CSVLogger": {"filename": "log.csv", "separator": ""}}]}},
            [],
            "train.callbacks",
        ),
        (
            "validation_data test with a validation file",
            {"data": {**CSV, "validation_path": "table.csv"}, "train": {"validation_data": "test"}},
            [],
            "train.validation_data",
        ),
        ("runs_dir is /dev/null", {"output": {"runs_dir": "/dev/null"}}, [], "output.runs_dir"),
        ("a double dot in --set", {}, ["--set", "train..epochs=2"], "train..epochs"),
        ("--set runs_dir below a file", {}, ["--set", "output.runs_dir=TMP/table.csv/runs"], "output.runs_dir"),
    ]
