"""`${VAR}` inside flow mappings and lists (as the example configs are written) and in `--set` values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.config.yamlsource import load_yaml_value, shield_variables
from kerasrun.errors import ConfigError

# TINY in flow style, with variables where a recipe puts them.
FLOW = """\
name: flow-${WHO}
seed: 7
data: {source: synthetic, generator: blobs, means: [[0, 0], [4, 0], [0, 4]], cov: [[1, 0], [0, 1]], samples_per_class: 100}
model:
  inputs: {x: [2]}
  layers:
    - Dense: {units: ${UNITS}, activation: ${ACTIVATION:-relu}}
    - Dense: {units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [${METRIC:-sparse_categorical_accuracy}]}
train: {epochs: ${EPOCHS}, batch_size: 16, validation_split: 0.25, stratify: true}
output: {runs_dir: ${SCRATCH}/runs, tensorboard: false}
"""


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """exp.yaml: FLOW, with every variable it needs set (ACTIVATION and METRIC left to their defaults)."""
    for name, value in {"WHO": "ada", "UNITS": "8", "EPOCHS": "2", "SCRATCH": "/scratch/ada"}.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "exp.yaml"
    path.write_text(FLOW)
    return path


def test_variables_inside_flow_mappings_and_lists(flow: Path) -> None:
    config = load_config(flow)
    assert config.name == "flow-ada"
    assert config.model.layers[0] == {"Dense": {"units": 8, "activation": "relu"}}  # one variable alone is a YAML value
    assert config.compile.metrics == ["sparse_categorical_accuracy"]
    assert config.train.epochs == 2 and config.train.batch_size == 16
    assert config.output.runs_dir == "/scratch/ada/runs"  # inside other text it stays text


def test_an_unset_variable_in_a_flow_mapping_is_located_at_its_key(flow: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    monkeypatch.delenv("EPOCHS")
    result = runner.invoke(app, ["validate", str(flow)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"{flow}:10:9: train.epochs: environment variable EPOCHS is not set" in result.output
    assert "${EPOCHS:-value}" in result.output


@pytest.mark.parametrize(
    "text",
    [
        "a: {b: ${X}, c: [}\n",  # the error is after the variable, on its line
        "a: [${X:-1,2}, {b: ${Y}]\n",
        "a: {b: ${X}}\nc: {d: ${Y:-[q]}, e: ]\n",
    ],
)
def test_yaml_errors_keep_their_line_and_column(text: str) -> None:
    # The same text with each `${...}` written as a plain word of the same length is located the same.
    plain = re.sub(r"\$\{[^}]*\}", lambda variable: "$" + "_" * (len(variable.group(0)) - 1), text)
    assert located(text) == located(plain) and located(text)[0][0] is not None


def located(text: str) -> list[tuple[int | None, int | None]]:
    """Where load_yaml_value locates the problems of `text`."""
    with pytest.raises(ConfigError) as error:
        load_yaml_value(text, "f")
    return [(p.line, p.column) for p in error.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: {p: '${A}', q: \"${B:-x, y}\"}", {"a": {"p": "${A}", "q": "${B:-x, y}"}}),  # quoted: as before
        ("a: {p: $${A}}", {"a": {"p": "$${A}"}}),  # `$${` stays for substitution to make it `${`
        ("a: ${A} # {not: ${B}}", {"a": "${A}"}),  # a comment stays a comment
        ("a: {p: ${A}:${B}, q: 1}", {"a": {"p": "${A}:${B}", "q": 1}}),
        ("{${K}: [${V:-a: b}]}", {"${K}": ["${V:-a: b}"]}),
        ("a: &x {k: ${A}}\nb: *x", {"a": {"k": "${A}"}, "b": {"k": "${A}"}}),
        ("a: |\n  {b: ${A}}\n", {"a": "{b: ${A}}\n"}),
        ('{a: "${", b}', {"a": "${", "b": None}),  # a `${` whose `}` is past a quote is not touched
    ],
)
def test_scalars_read_as_written(text: str, expected: object) -> None:
    assert load_yaml_value(text, "f")[0] == expected


@pytest.mark.parametrize(
    "text",
    ["{a: " + "${" * 60_000, "{a: " + "${x" * 40_000 + "}", "{a: " + '${"}' * 30_000, "{a: " + "$${b}, " * 20_000 + "c: 1}"],
    ids=["unclosed", "one-close", "quotes", "escapes"],
)
def test_shielding_is_linear(text: str) -> None:
    shielded = shield_variables(text)  # a quadratic scan of these would not finish
    assert len(shielded) == len(text)


def test_set_values_are_substituted(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIX", "/data/r3")
    monkeypatch.setenv("UNITS", "16")
    overrides = [
        "output.runs_dir=${FIX}/runs",
        "train.epochs=${EPOCHS:-4}",
        "model.layers[0].Dense={units: ${UNITS}, activation: ${ACT:-tanh}}",
        "compile.metrics+=[${M:-sparse_categorical_crossentropy}]",
    ]
    config = load_config(write_config({}), overrides)
    assert config.output.runs_dir == "/data/r3/runs"
    assert config.train.epochs == 4
    assert config.model.layers[0] == {"Dense": {"units": 16, "activation": "tanh"}}
    assert config.compile.metrics == ["sparse_categorical_accuracy", "sparse_categorical_crossentropy"]
    assert load_config(write_config({}), ["output.runs_dir=$${literal}"]).output.runs_dir == "${literal}"


def test_an_unset_variable_in_set_names_set(write_config, runner: CliRunner) -> None:
    path = str(write_config({}))
    result = runner.invoke(app, ["validate", path, "--set", "data.path=${R3_FIX}/other.npz"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "--set: data.path: environment variable R3_FIX is not set" in result.output
    assert "${R3_FIX:-value}" in result.output
    result = runner.invoke(app, ["validate", path, "--set", "model.layers[0].Dense={units: ${R3_UNITS}}"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "--set: model.layers[0].Dense.units: environment variable R3_UNITS is not set" in result.output
