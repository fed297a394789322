"""The bounded, strict YAML reader and the strict schema: hostile or mistaken input is one located exit-2 message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kerasrun.cli import app
from kerasrun.config import yamlsource
from kerasrun.config.load import load_config
from kerasrun.config.yamlsource import parse_yaml
from kerasrun.errors import ConfigError


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: a few hundred bytes that expand to 10**levels strings."""
    text = 'name: x\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in range(1, levels + 1):
        text += f"l{level}: &l{level} [" + ", ".join([f"*{'a' if level == 1 else f'l{level - 1}'}"] * 10) + "]\n"
    return text


def problems_of(text: str) -> list[str]:
    """The formatted problems parse_yaml raises for `text`."""
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "t.yaml")
    return [f"{p.line}:{p.column}: {p.key}: {p.message}" for p in info.value.problems]


def test_the_c_loader_is_used() -> None:
    assert yamlsource.Loader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def test_an_alias_bomb_is_refused_at_once() -> None:
    (problem,) = problems_of(billion_laughs())
    assert "once its aliases are expanded (limit: 200,000 values" in problem  # counted, not expanded into 10**9 strings


def test_aliases_within_the_limit_still_work() -> None:
    data, source = parse_yaml("name: x\nbase: &b {units: 8}\nlayers: [{Dense: *b}, {Dense: *b}]\nmerged:\n  <<: *b\n  units: 4\n", "t.yaml")
    assert data["layers"] == [{"Dense": {"units": 8}}] * 2 and data["merged"] == {"units": 4}  # merge keys are not duplicates
    assert source.positions[("layers", "1")] == (3, 23)


def test_recursion_and_depth_are_refused() -> None:
    assert problems_of("name: x\ndata: &d\n  self: *d\n") == ["2:7: : an alias refers to a node that contains it (a recursive alias)"]
    (problem,) = problems_of("name: x\ndata: " + "[" * 600 + "]" * 600 + "\n")
    assert "nested more than 64 levels deep (limit: nesting depth 64)" in problem


def test_duplicate_keys_are_errors_naming_both_places() -> None:
    assert problems_of("name: a\nname: b\ntrain:\n  epochs: 1\n  epochs: 2\n") == [
        "2:1: name: duplicate key (first at line 1); YAML allows each key once per mapping",
        "5:3: train.epochs: duplicate key (first at line 4); YAML allows each key once per mapping",
    ]


def test_a_huge_file_is_refused_before_it_is_read(runner, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("name: x\nlist: [" + ",".join(["1"] * 1_100_000) + "]\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "a config may be at most 2 MB (limit: file size)" in result.output


def test_set_values_are_read_the_same_way(write_config) -> None:
    with pytest.raises(ConfigError, match="an alias refers to a node that contains it"):
        load_config(write_config(), ["train.callbacks=&c [*c]"])
    with pytest.raises(ConfigError, match=r"duplicate key \(first"):
        load_config(write_config(), ["model.layers[0]={Dense: {units: 3, units: 4}}"])


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"train": {"epochs": True}}, "train.epochs", "Input should be a valid integer (got True)\n    YAML reads true/false"),
        ({"seed": True}, "seed", "Input should be a valid integer (got True)"),
        ({"seed": 2**40}, "seed", "less than or equal to 4294967295"),
        ({"train": {"batch_size": "1e30"}}, "train.batch_size", "YAML reads 1e30 as text"),
        ({"train": {"batch_size": 2**40}}, "train.batch_size", "less than or equal to 16777216"),
        ({"train": {"validation_split": True}}, "train.validation_split", "got the boolean true"),
        ({"data": {"preprocess": [{"scale": float("inf")}]}}, "data.preprocess[0].scale", "finite number"),
        ({"compile": {"optimizer": {"SGD": {"learning_rate": -0.1}}}}, "compile.optimizer", "`learning_rate: -0.1` is negative"),
        ({"compile": {"optimizer": {"Adam": {"learning_rate": "1e-3"}}}}, "compile.optimizer", "`learning_rate: 1e-3` is text to YAML"),
        ({"compile": {"optimizer": {"Adam": {"beta_1": float("nan")}}}}, "compile.optimizer", "`beta_1: nan` is not a finite number"),
        (
            {"compile": {"optimizer": {"Adam": {"learning_rate": "0.01"}}}},
            "compile.optimizer",
            "`learning_rate: '0.01'` is quoted, so it is text",
        ),
        ({"model": {"layers": [{"Dense": {"units": 3, "name": "déjà vu"}}]}}, "model.layers[0]", "is not a usable layer name"),
        ({"model": {"inputs": {"a/b": [2]}}}, "model.inputs.a/b", "is not a usable layer name"),
        ({"name": "x" * 300}, "name", "at most 100 characters"),
        ({"model": {"layers": [{"Dense": {"units": 4}}] * 1001}}, "model.layers", "at most 1000 items"),
        ({"model": {"layers": [{"Dropout": {"rate": "5e-1"}}]}}, "model.layers[0]", "`rate: 5e-1` is text to YAML"),
        # Nested specs: an initializer's, a regularizer's and a schedule's arguments, by their dotted path.
        (
            {"model": {"layers": [{"Dense": {"units": 3, "kernel_initializer": {"RandomNormal": {"stddev": "2e-2"}}}}]}},
            "model.layers[0]",
            "`kernel_initializer.RandomNormal.stddev: 2e-2` is text to YAML",
        ),
        (
            {"model": {"layers": [{"Dense": {"units": 3, "kernel_regularizer": {"L2": {"l2": "1e-4"}}}}]}},
            "model.layers[0]",
            "`kernel_regularizer.L2.l2: 1e-4` is text to YAML",
        ),
        (
            {
                "compile": {
                    "optimizer": {"Adam": {"learning_rate": {"ExponentialDecay": {"initial_learning_rate": "1e-2", "decay_steps": 5}}}}
                }
            },
            "compile.optimizer",
            "`learning_rate.ExponentialDecay.initial_learning_rate: 1e-2` is text to YAML",
        ),
    ],
)
def test_values_yaml_or_keras_would_take_but_can_only_be_mistakes(runner, write_config, runs_dir, changes, key, message) -> None:
    result = runner.invoke(app, ["train", str(write_config(changes)), "--runs-dir", str(runs_dir)])
    assert result.exit_code == 2, result.output
    assert f"{key}: " in result.output and message in result.output, result.output
    assert "Traceback" not in result.output and list(runs_dir.iterdir()) == []


def test_yaml_11_surprises_and_limits_found_by_review(runner, write_config, tmp_path: Path) -> None:
    assert problems_of("name: x\nseed: 017\n") == ["2:7: seed: YAML 1.1 reads 017 as a number in octal (base 8)"]
    assert "base 60" in problems_of("name: x\nseed: 10:30\n")[0]
    assert "duplicate key" in problems_of("name: x\ntrue: 1\nTrue: 2\n")[0]
    assert "a value YAML can't turn into Python" in problems_of("name: x\nseed: " + "9" * 5000 + "\n")[0]
    (problem,) = problems_of("name: x\nlist: [" + ",".join(["1"] * 600_000) + "]\n")
    assert "more than 200,000 values" in problem  # refused while parsing, never composed
    anchored = problems_of("name: x\ntrain: &t\n  epochs: 1\n  epochs: 2\nevaluate:\n  <<: *t\n")
    assert anchored == ["4:3: train.epochs: duplicate key (first at line 3); YAML allows each key once per mapping"]  # where it is written
    fifo = tmp_path / "fifo.yaml"
    import os

    os.mkfifo(fifo)
    result = runner.invoke(app, ["validate", str(fifo)])
    assert result.exit_code == 2 and "is not a regular file" in result.output  # instead of waiting forever
    result = runner.invoke(app, ["validate", str(write_config()), "--set", "=5"])
    assert result.exit_code == 2 and "expected --set dotted.key=value" in result.output
    result = runner.invoke(app, ["validate", str(write_config()), "--set", "train.epochs=1e3"])
    assert "YAML reads 1e3 as text: write the integer, 1000" in result.output
    result = runner.invoke(app, ["validate", str(write_config()), "--set", "model.layers[0].Dense.units=-3", "--build"])
    assert "(with --set model.layers[0].Dense.units)" in result.output
