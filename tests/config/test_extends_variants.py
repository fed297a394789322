"""`extends` across a section's kind: another `data.source` or another class replaces the base's section; `key: !delete`; merge errors name the child."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import TINY
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.compose import read_config_file, substitute
from kerasrun.config.data import NpzData
from kerasrun.config.load import load_config

TFRECORD = """\
data:
  source: tfrecord
  files: shards/*.tfrecord
  features:
    x: {dtype: float32, shape: [2]}
    y: {dtype: int64, shape: []}
  inputs: [x]
  targets: [y]
  shuffle_buffer: 100
  parallel_files: 2
  cache: none
"""


def write(path: Path, text: str) -> Path:
    """Write dedented YAML text (making the folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tfrecord_base(tmp_path: Path) -> Path:
    """bases/tf.yaml: the tiny experiment reading TFRecord shards (valid on its own: `validate` only parses the section)."""
    tiny = {key: value for key, value in TINY.items() if key != "data"}
    return write(tmp_path / "bases" / "tf.yaml", TFRECORD + yaml.safe_dump(tiny, sort_keys=False))


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    """A small .npz of the tiny experiment's shape."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(40, 2)), y_train=np.arange(40) % 3)
    return tmp_path / "d.npz"


def validate(runner: CliRunner, path: Path, *args: str) -> tuple[int, str]:
    """`kerasrun validate PATH ARGS`: (exit code, output)."""
    result = runner.invoke(app, ["validate", str(path), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_another_data_source_replaces_the_section(tmp_path: Path, tfrecord_base: Path, npz: Path, runner: CliRunner) -> None:
    assert validate(runner, tfrecord_base)[0] == 0
    child = write(tmp_path / "exp.yaml", "extends: bases/tf.yaml\ndata:\n  source: npz\n  path: d.npz\n")
    code, output = validate(runner, child)
    assert code == 0, output
    composed, _ = read_config_file(child)
    assert composed["data"] == {"source": "npz", "path": "d.npz"}  # none of the tfrecord keys are left
    config = load_config(child)
    assert isinstance(config.data, NpzData) and config.model.layers == TINY["model"]["layers"]  # other sections still merge


def test_the_same_data_source_still_merges(tmp_path: Path, tfrecord_base: Path) -> None:
    child = write(tmp_path / "exp.yaml", "extends: bases/tf.yaml\ndata:\n  source: tfrecord\n  features:\n    w: {dtype: float32}\n")
    data = read_config_file(child)[0]["data"]
    assert list(data["features"]) == ["x", "y", "w"] and data["shuffle_buffer"] == 100  # feature names are merged, not a class


def test_a_missing_key_after_a_switch_says_the_base_section_was_replaced(tmp_path: Path, tfrecord_base: Path, runner: CliRunner) -> None:
    child = write(tmp_path / "exp.yaml", "extends: bases/tf.yaml\ndata:\n  source: npz\n")
    code, output = validate(runner, child)
    assert code == 2
    assert (
        f"{child}:2:1: data.path: required key is missing "
        "(`source: npz` replaces the whole `data` section of source tfrecord: none of its keys are kept)"
    ) in output


@pytest.mark.parametrize(
    ("base", "child", "expected"),
    [
        ("{Adam: {learning_rate: 0.01, beta_1: 0.8}}", "{SGD: {momentum: 0.9}}", {"SGD": {"momentum": 0.9}}),
        ("{Adam: {learning_rate: 0.01}}", "{Adam: {beta_1: 0.8}}", {"Adam": {"learning_rate": 0.01, "beta_1": 0.8}}),
        ("{adam: {learning_rate: 0.01}}", "{sgd: {momentum: 0.9}}", {"sgd": {"momentum": 0.9}}),
        (
            "{class_name: Adam, config: {learning_rate: 0.01}}",
            "{class_name: SGD, config: {momentum: 0.9}}",
            {"class_name": "SGD", "config": {"momentum": 0.9}},
        ),
        ("{class_name: Adam, config: {learning_rate: 0.01}}", "{Adam: {beta_1: 0.8}}", {"Adam": {"beta_1": 0.8}}),
        (
            "{Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.1, decay_steps: 10}}}}",
            "{Adam: {learning_rate: {ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 5, decay_rate: 0.5}}}}",
            {"Adam": {"learning_rate": {"ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.5}}}},
        ),
    ],
    ids=["Adam-to-SGD", "Adam-merges", "lowercase", "keras-form", "form-change", "nested-schedule"],
)
def test_an_optimizer_of_another_class_replaces_the_base(
    tmp_path: Path, runner: CliRunner, base: str, child: str, expected: object
) -> None:
    tiny = yaml.safe_dump({key: value for key, value in TINY.items() if key != "compile"}, sort_keys=False)
    write(tmp_path / "base.yaml", f"{tiny}compile:\n  optimizer: {base}\n  loss: sparse_categorical_crossentropy\n")
    path = write(tmp_path / "exp.yaml", f"extends: base.yaml\ncompile:\n  optimizer: {child}\n")
    code, output = validate(runner, path)
    assert code == 0, output
    assert load_config(path).compile.optimizer == expected


def test_a_loss_of_another_class_replaces_the_base(tmp_path: Path, write_config) -> None:
    write_config({"compile": {"loss": {"SparseCategoricalCrossentropy": {"from_logits": False, "ignore_class": None}}}}, name="base.yaml")
    path = write(tmp_path / "exp.yaml", "extends: base.yaml\ncompile:\n  loss: {CategoricalFocalCrossentropy: {gamma: 3.0}}\n")
    # Merged, the loss would be a mapping of two keys: per-output losses for outputs named after two classes.
    assert read_config_file(path)[0]["compile"]["loss"] == {"CategoricalFocalCrossentropy": {"gamma": 3.0}}


def test_a_layer_of_another_class_in_a_mapping_replaces_the_base(tmp_path: Path) -> None:
    write(
        tmp_path / "base.yaml",
        "model:\n  factory: nets:build\n  kwargs:\n    head: {Dense: {units: 3, activation: softmax}}\n    width: 8\n",
    )
    path = write(
        tmp_path / "exp.yaml", "extends: base.yaml\nmodel:\n  kwargs:\n    head: {keras.layers:Conv1D: {filters: 3, kernel_size: 1}}\n"
    )
    kwargs = read_config_file(path)[0]["model"]["kwargs"]
    assert kwargs == {"head": {"keras.layers:Conv1D": {"filters": 3, "kernel_size": 1}}, "width": 8}
    again = write(tmp_path / "same.yaml", "extends: base.yaml\nmodel:\n  kwargs:\n    head: {Dense: {units: 5}}\n")
    assert read_config_file(again)[0]["model"]["kwargs"]["head"] == {"Dense": {"units": 5, "activation": "softmax"}}  # same class: merged


def test_a_list_of_layers_is_replaced_whole(tmp_path: Path, write_config) -> None:
    write_config(name="base.yaml")
    path = write(tmp_path / "exp.yaml", "extends: base.yaml\nmodel:\n  layers:\n    - Dense: {units: 3, activation: softmax}\n")
    assert read_config_file(path)[0]["model"]["layers"] == [{"Dense": {"units": 3, "activation": "softmax"}}]


def test_delete_takes_a_key_of_the_base_out(tmp_path: Path, write_config, runner: CliRunner) -> None:
    write_config(name="base.yaml")
    path = write(
        tmp_path / "exp.yaml",
        """
        extends: base.yaml
        compile:
          metrics: !delete
        train:
          validation_split: !delete
          stratify: !delete
          validation_steps: 2
        model: {inputs: {x: !delete , z: [2]}}
        """,
    )
    code, output = validate(runner, path)
    assert code == 0, output
    composed = read_config_file(path)[0]
    assert "metrics" not in composed["compile"] and composed["model"]["inputs"] == {"z": [2]}
    assert composed["train"] == {"epochs": 3, "batch_size": 16, "validation_steps": 2}
    config = load_config(path)
    assert config.compile.metrics == [] and config.train.validation_split is None  # the schema's defaults


def test_a_base_deletes_a_key_of_its_own_base(tmp_path: Path, write_config) -> None:
    write_config(name="a.yaml")
    write(tmp_path / "b.yaml", "extends: a.yaml\ntrain:\n  stratify: !delete\n")
    path = write(tmp_path / "c.yaml", "extends: b.yaml\ntrain:\n  epochs: 1\n")
    assert read_config_file(path)[0]["train"] == {"epochs": 1, "batch_size": 16, "validation_split": 0.25}


def test_deleting_the_data_source_of_the_base(tmp_path: Path, tfrecord_base: Path, runner: CliRunner) -> None:
    # A section replaced by another source takes a deletion of a key the base had silently: the key is gone either way.
    child = write(tmp_path / "exp.yaml", "extends: bases/tf.yaml\ndata:\n  source: npz\n  path: d.npz\n  cache: !delete\n")
    assert read_config_file(child)[0]["data"] == {"source": "npz", "path": "d.npz"}


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        (
            "extends: base.yaml\ntrain:\n  batch_sise: !delete\n",
            [],
            "exp.yaml:3:3: train.batch_sise: `!delete`: the configs this file extends have no `train.batch_sise`\n"
            "    did you mean `batch_size`? Keys there: batch_size, epochs, stratify, validation_split",
        ),
        (
            "extends: base.yaml\noutput:\n  mlflow: !delete\n",
            [],
            "exp.yaml:3:3: output.mlflow: `!delete`: the configs this file extends have no `output` to delete `mlflow` from",
        ),
        (
            "extends: base.yaml\ncompile:\n  optimizer:\n    SGD:\n      momentum: !delete\n",
            [],
            "exp.yaml:5:7: compile.optimizer.SGD.momentum: `!delete`: the configs this file extends have no "
            "`compile.optimizer.SGD` to delete `momentum` from",
        ),
        (
            "extends: base.yaml\nmodel:\n  layers:\n    - !delete\n",
            [],
            "exp.yaml:4:7: model.layers[0]: `!delete` takes out a key, not a list item: a list is replaced whole",
        ),
        (
            "name: x\ntrain:\n  epochs: !delete\n",
            [],
            "exp.yaml:3:3: train.epochs: `!delete` takes a key out of the config a file extends, and this file extends none\n"
            "    `key: !delete` goes in a config with `extends:`, under a key one of its bases gives",
        ),
        ("extends: base.yaml\ntrain:\n  epochs: !delete 3\n", [], "exp.yaml:3:11: YAML syntax error: `!delete` takes no value"),
        (
            "extends: base.yaml\ntrain: {epochs: !delete}\n",
            [],
            "exp.yaml:2:24: YAML syntax error: did not find expected whitespace or line break (while scanning a tag)\n"
            "    put a space after !delete: `{key: !delete }`",
        ),
        (
            "extends: base.yaml\n",
            ["--set", "train.epochs=!delete"],
            "--set: train.epochs: `!delete` takes a key out of a base config, only in a config file with `extends:`",
        ),
    ],
    ids=["misspelled", "no-such-section", "inside-a-replaced-value", "list-item", "no-extends", "with-a-value", "flow-style", "--set"],
)
def test_delete_mistakes_are_located(tmp_path: Path, write_config, runner: CliRunner, text: str, args: list[str], expected: str) -> None:
    write_config(name="base.yaml")
    path = write(tmp_path / "exp.yaml", text)
    code, output = validate(runner, path, *args)
    assert code == 2 and expected in output, output


def test_a_variable_holding_delete_stays_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHAT", "!delete")
    assert substitute("${WHAT}") == "!delete"  # only a config file's own `!delete` deletes


def test_errors_of_a_base_key_name_the_child_key_that_made_them(tmp_path: Path, runner: CliRunner) -> None:
    # A base that leaves the source to the config extending it: its keys are read under the child's source.
    tiny = yaml.safe_dump({key: value for key, value in TINY.items() if key != "data"}, sort_keys=False)
    write(tmp_path / "bases" / "partial.yaml", f"data:\n  files: shards/*.tfrecord\n  shuffle_buffer: 100\n{tiny}")
    child = write(tmp_path / "exp.yaml", "extends: bases/partial.yaml\ndata:\n  source: npz\n  path: d.npz\n  x_tset: x\n")
    code, output = validate(runner, child)
    assert code == 2
    base = tmp_path / "bases" / "partial.yaml"
    named = f"(with `data.source: npz` from {child}:3:3)"
    assert f"{base}:2:3: data.files: unknown key {named}" in output
    assert f"{base}:3:3: data.shuffle_buffer: unknown key {named}" in output
    assert f"{child}:5:3: data.x_tset: unknown key\n" in output  # the child's own mistake needs no note
    fixed = write(
        tmp_path / "fixed.yaml",
        "extends: bases/partial.yaml\ndata:\n  source: npz\n  path: d.npz\n  files: !delete\n  shuffle_buffer: !delete\n",
    )
    assert read_config_file(fixed)[0]["data"] == {"source": "npz", "path": "d.npz"}


def test_errors_after_a_deletion_are_located_in_the_child(tmp_path: Path, write_config, runner: CliRunner) -> None:
    write_config(name="base.yaml")
    path = write(tmp_path / "exp.yaml", "extends: base.yaml\ncompile:\n  loss: !delete\n")
    code, output = validate(runner, path)
    assert code == 2 and f"{path}:2:1: compile.loss: required key is missing" in output, output
