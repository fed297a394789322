"""Config composition: `extends:` with located errors through the merge, `${VAR}` substitution, and `--set key+=[...]`."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import TINY, only_run, train
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.compose import read_config_file
from kerasrun.config.data import NpzData, SyntheticData
from kerasrun.config.load import load_config
from kerasrun.config.resolved import resolved_dict
from kerasrun.config.sources import ANY_SOURCE_PATH_FIELDS, SOURCES
from kerasrun.errors import ConfigError


def write(path: Path, text: str) -> Path:
    """Write dedented YAML text (making the folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """bases/tiny.yaml: the tiny experiment, in a folder of its own."""
    path = tmp_path / "bases" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


def test_extends_deep_merges_and_later_wins(tmp_path: Path, base: Path) -> None:
    write(tmp_path / "bases" / "wide.yaml", "model:\n  layers:\n    - Dense: {units: 64}\n    - Dense: {units: 3, activation: softmax}\n")
    child = write(
        tmp_path / "exp.yaml",
        """
        extends: [bases/tiny.yaml, bases/wide.yaml]
        name: tiny-wide
        train:
          epochs: 5
        """,
    )
    config = load_config(child)
    assert config.name == "tiny-wide" and config.train.epochs == 5
    assert config.train.batch_size == TINY["train"]["batch_size"]  # the rest of the section comes from the base
    assert config.model.layers == [{"Dense": {"units": 64}}, {"Dense": {"units": 3, "activation": "softmax"}}]  # lists are replaced
    assert isinstance(config.data, SyntheticData) and config.data.samples_per_class == 100


def test_problems_are_located_in_the_file_that_gave_the_value(tmp_path: Path, base: Path) -> None:
    base.write_text(base.read_text().replace("batch_size: 16", "batch_size: 0"))
    child = write(tmp_path / "exp.yaml", "extends: bases/tiny.yaml\ntrain:\n  epochs: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(child)
    where = {p.key: (Path(p.file or "").name, p.line) for p in caught.value.problems}
    line = next(n for n, text in enumerate(base.read_text().splitlines(), 1) if "batch_size" in text)
    assert where == {"train.epochs": ("exp.yaml", 3), "train.batch_size": ("tiny.yaml", line)}


def test_a_base_configs_relative_paths_are_its_own(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "bases").mkdir()
    np.savez(tmp_path / "bases" / "d.npz", x_train=rng.normal(size=(40, 2)), y_train=np.arange(40) % 3)
    data = {"source": "npz", "path": "d.npz", "x_test": None, "y_test": None}
    write(tmp_path / "bases" / "npz.yaml", yaml.safe_dump({**TINY, "data": data}))
    config = load_config(write(tmp_path / "runs" / "exp.yaml", "extends: ../bases/npz.yaml\n"))
    assert isinstance(config.data, NpzData)
    assert config.resolve_path(config.data.path) == tmp_path / "bases" / "d.npz"


PATH_FIELDS = [(source, field) for source, cls in SOURCES.items() for field in cls.PATH_FIELDS]


@pytest.mark.parametrize(("source", "field"), [*PATH_FIELDS, *((None, field) for field in ANY_SOURCE_PATH_FIELDS)])
def test_a_path_field_declared_on_its_source_is_resolved_under_extends_and_in_the_run_folder(
    tmp_path: Path, write_config, source: str | None, field: str
) -> None:
    """A base config's relative path is the base's own; a run folder's config.yaml has it absolute: both from PATH_FIELDS."""
    named = f"  source: {source}\n" if source else ""  # a base may leave the source to the config that extends it
    write(tmp_path / "bases" / "base.yaml", f"data:\n{named}  {field}: shards/x\n")
    composed, _ = read_config_file(write(tmp_path / "exp.yaml", "extends: bases/base.yaml\n"))
    assert composed["data"][field] == str(tmp_path.resolve() / "bases" / "shards" / "x")
    if source is None:
        return
    config = load_config(write_config(name="run.yaml"))
    values: dict[str, Any] = {"source": source, field: "shards/x"}
    section = SOURCES[source].model_construct(**values)  # only the field under test: any source's other keys can stay out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydantic's serializer warns about the keys left out
        resolved = resolved_dict(config.model_copy(update={"data": section}))
    assert resolved["data"][field] == str(tmp_path.resolve() / "shards" / "x")


def test_every_path_like_field_of_a_source_is_declared_a_path_field() -> None:
    for cls in SOURCES.values():
        texts = {name for name, info in cls.model_fields.items() if "str" in str(info.annotation)}  # not parallel_files: a number
        path_like = {name for name in texts if name.endswith(("path", "files", "dir"))}
        assert set(cls.PATH_FIELDS) <= set(cls.model_fields) and path_like <= set(cls.PATH_FIELDS), cls.__name__


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "a.yaml extends itself (through a.yaml → b.yaml)"),
        ({"a.yaml": "extends: [nowhere.yaml]\n"}, "extends[0]: no such config file"),
        ({"a.yaml": "extends: {file: b.yaml}\n"}, "extends: expected a config file to extend, or a list of them"),
    ],
    ids=["cycle", "missing", "not-a-name"],
)
def test_extends_mistakes(tmp_path: Path, runner: CliRunner, files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    result = runner.invoke(app, ["validate", str(tmp_path / "a.yaml")])
    assert result.exit_code == 2 and expected in result.output, result.output


def test_extends_is_bounded_in_files_read(tmp_path: Path, base: Path, runner: CliRunner) -> None:
    # 7 levels of 8 bases each would read 8**7 files (it ran for hours); composition stops at 64, located.
    for level in range(7, 0, -1):
        for index in range(8):
            bases = "" if level == 7 else "extends: [" + ", ".join(f"l{level + 1}_{i}.yaml" for i in range(8)) + "]\n"
            write(tmp_path / f"l{level}_{index}.yaml", f"{bases}train:\n  epochs: {level}\n")
    top = write(tmp_path / "exp.yaml", "extends: [bases/tiny.yaml, " + ", ".join(f"l1_{i}.yaml" for i in range(8)) + "]\n")
    result = runner.invoke(app, ["validate", str(top)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "extends reads more than 64 config files in all" in result.output and "(limit: extends files 64)" in result.output
    assert ".yaml:1:" in result.output and "extends[" in result.output  # located at the base that went past the limit


def test_extends_is_bounded_in_total_size(tmp_path: Path, base: Path) -> None:
    # Each base is under the 2 MB of one file; 40 of them together are not (and merging them stays linear).
    wide = "extra_keys:\n" + "".join(f"  key_{i}: {i}\n" for i in range(4000))
    for index in range(40):
        write(tmp_path / f"wide_{index}.yaml", wide)
    top = write(tmp_path / "exp.yaml", "extends: [" + ", ".join(f"wide_{i}.yaml" for i in range(40)) + "]\n")
    with pytest.raises(ConfigError) as raised:
        read_config_file(top)
    assert "hold more than 2 MB of YAML in all" in str(raised.value) and "extends[" in raised.value.problems[0].key


def test_extends_through_a_symlink_loop_is_located(tmp_path: Path, runner: CliRunner) -> None:
    (tmp_path / "loop_a.yaml").symlink_to(tmp_path / "loop_b.yaml")
    (tmp_path / "loop_b.yaml").symlink_to(tmp_path / "loop_a.yaml")
    write(tmp_path / "a.yaml", "name: x\nextends: [loop_a.yaml]\n")
    result = runner.invoke(app, ["validate", str(tmp_path / "a.yaml")], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "a.yaml:2:11: extends[0]:" in result.output and "Symlink loop" in result.output and "RuntimeError" not in result.output
    result = runner.invoke(app, ["validate", str(tmp_path / "loop_a.yaml")], catch_exceptions=False)
    assert result.exit_code == 2 and "symlink" in result.output, result.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${" * 60_000, "${" * 60_000),  # unclosed: stays text (the regex took minutes on this)
        ("${a:b" * 30_000 + "}", "${a:b" * 30_000 + "}"),  # `${a:b...}` is no variable
        ("$${" * 40_000, "${" * 40_000),
        ("x" * 120_000, "x" * 120_000),
    ],
    ids=["unclosed", "colons", "escapes", "long"],
)
def test_substitution_is_linear(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    from kerasrun.config.compose import substitute

    monkeypatch.setenv("BIG", value)
    assert substitute("${BIG}") == value  # a variable's value is not substituted again
    assert substitute(value) == expected  # the same text in a config is


def test_substitution_is_bounded_in_total_size(tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    monkeypatch.setenv("BIG", "a" * 120_000)
    names = "".join(f"  n{i}: ${{BIG}}\n" for i in range(20))  # 20 x 120 kB: more than a config may hold
    child = write(tmp_path / "exp.yaml", f"extends: bases/tiny.yaml\nextra:\n{names}name: ${{BIG}}\n")
    result = runner.invoke(app, ["validate", str(child)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "past 2 MB of text in all" in result.output and len(result.output) < 2_000, result.output[:2000]
    child.write_text("extends: bases/tiny.yaml\nname: ${BIG}\n")
    result = runner.invoke(app, ["validate", str(child)], catch_exceptions=False)
    assert result.exit_code == 2 and "at most 100 characters" in result.output and len(result.output) < 1_000, result.output[:1000]


def test_environment_variables(tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    child = write(
        tmp_path / "exp.yaml",
        """
        extends: bases/tiny.yaml
        name: run-${WHO}
        train:
          epochs: ${EPOCHS}
          batch_size: ${BATCH:-8}
        output:
          runs_dir: $${NOT_A_VARIABLE}
        """,
    )
    monkeypatch.setenv("WHO", "ada")
    monkeypatch.setenv("EPOCHS", "4")
    config = load_config(child)
    assert (config.name, config.train.epochs, config.train.batch_size) == ("run-ada", 4, 8)  # one variable alone is a YAML value
    assert config.output.runs_dir == "${NOT_A_VARIABLE}"
    monkeypatch.delenv("EPOCHS")
    result = runner.invoke(app, ["validate", str(child)])
    assert result.exit_code == 2, result.output
    assert "exp.yaml:5:3: train.epochs: environment variable EPOCHS is not set" in result.output
    assert "${EPOCHS:-value}" in result.output


def test_set_appends_to_a_list(write_config, runner: CliRunner) -> None:
    path = write_config({})
    config = load_config(path, ["compile.metrics+=[sparse_categorical_crossentropy]", "train.callbacks+=EarlyStopping"])
    assert config.compile.metrics == ["sparse_categorical_accuracy", "sparse_categorical_crossentropy"]
    assert config.train.callbacks == ["EarlyStopping"]
    result = runner.invoke(app, ["validate", str(path), "--set", "train.epochs+=[3]"])
    assert result.exit_code == 2 and "+= appends to a list" in result.output, result.output


@pytest.mark.parametrize(
    ("setting", "message", "hint"),
    [
        (
            "model.layers[5].Dense.units=3",
            "model.layers[5]: index 5 is past the end of the list, which has 2 items",
            "`--set model.layers+=VALUE` appends",
        ),
        ("model.layers[2]=Flatten", "model.layers[2]: index 2 is past the end of the list, which has 2 items", "indices go from 0 to 1"),
        (
            "compile.optimizer.Adam.learning_rate=0.1",
            "compile.optimizer.Adam: cannot set a key inside `adam`",
            "give compile.optimizer as a whole",
        ),
        ("train.epochs.max=3", "train.epochs.max: cannot set a key inside `3`: train.epochs is no mapping", ""),
    ],
)
def test_set_says_why_it_cannot_reach_a_key(write_config, runner: CliRunner, setting: str, message: str, hint: str) -> None:
    config = write_config({"compile": {"optimizer": "adam"}})  # TINY: two layers, three epochs
    result = runner.invoke(app, ["validate", str(config), "--set", setting], catch_exceptions=False)
    assert result.exit_code == 2 and f"--set: {message}" in result.output and hint in result.output, result.output


@pytest.mark.parametrize("dotted", ["train..epochs", ".train.epochs", "train.epochs.", "model.layers[x].Dense", "train[0"])
def test_set_refuses_what_is_not_a_dotted_key(write_config, runner: CliRunner, dotted: str) -> None:
    # `train..epochs=5` used to set train.epochs and train; an empty key is a typo, not a key.
    result = runner.invoke(app, ["validate", str(write_config({})), "--set", f"{dotted}=5"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"--set: {dotted}: not a dotted key: keys joined by single dots, list items as [N]" in result.output


def test_the_run_folder_keeps_the_merged_substituted_config(
    tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    monkeypatch.setenv("EPOCHS", "2")
    child = write(tmp_path / "exp.yaml", "extends: bases/tiny.yaml\nname: composed\ntrain:\n  epochs: ${EPOCHS}\n")
    result = train(runner, child, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "extends" not in saved and saved["train"]["epochs"] == 2 and saved["name"] == "composed"
    monkeypatch.delenv("EPOCHS")  # the run folder stands on its own: resume needs neither the base nor the variable
    base.unlink()
    result = runner.invoke(app, ["resume", str(run), "--set", "train.epochs=3", "--progress", "none"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 3
