"""Config loading: schema, overrides, and located errors (file:line:column, key, did-you-mean)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from kerasrun.config.load import dotted_parts, load_config, shrink_for_smoke
from kerasrun.config.resolved import config_to_yaml
from kerasrun.config.schema import Config
from kerasrun.config.spec import split_spec
from kerasrun.errors import ConfigError


def problems_of(path: Path, overrides: list[str] | None = None) -> list[str]:
    """The formatted problems load_config raises for a file."""
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return [str(p.format_location()) + " " + p.key + ": " + p.message + " " + (p.hint or "") for p in info.value.problems]


def test_every_shipped_config_validates() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path)
        assert isinstance(config, Config)


def test_defaults_are_filled_in(write_config) -> None:
    config = load_config(write_config())
    assert config.train.loop == "auto"
    assert config.compile.steps_per_execution == 32
    assert config.runtime.device == "auto"
    assert config.output.runs_dir == "runs"


def test_unknown_key_points_at_line_and_suggests(write_config) -> None:
    path = write_config(
        """\
        name: x
        data: {source: sklearn, name: iris}
        model:
          inputs: {x: [4]}
          layers: [Dense]
        compile:
          loss: mse
          optimzer: adam
        """
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:8:3 compile.optimzer: unknown key")
    assert "did you mean `optimizer`?" in problem


def test_all_problems_are_reported_at_once(write_config) -> None:
    path = write_config(
        """\
        name: x
        data: {source: keras, nmae: mnist}
        model: {inputs: {x: [4]}, layers: [Dense]}
        compile: {loss: mse}
        train: {epochs: 0, batch_size: many, validation_split: 1.5}
        """
    )
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert "data.nmae: unknown key" in joined and "did you mean `name`" in joined
    assert "data.name: required key is missing" in joined
    assert "train.epochs: Input should be greater than or equal to 1 (got 0)" in joined
    assert "train.batch_size: Input should be a valid integer" in joined
    assert "train.validation_split: Input should be less than 1" in joined
    assert f"{path}:5:" in joined
    assert len(problems) == 5


def test_a_validation_split_of_zero_is_no_split(write_config) -> None:
    # Keras's fit(validation_split=0.0) holds nothing out; a sweep or --set can turn validation off the same way.
    path = write_config({"train": {"validation_split": 0, "stratify": False}})
    assert load_config(path).train.validation_split is None
    assert load_config(path, ["train.validation_split=0.0"]).train.validation_split is None
    [problem] = problems_of(write_config({"train": {"validation_split": -0.1, "stratify": False}}, name="negative.yaml"))
    assert "train.validation_split: Input should be greater than 0" in problem


def test_a_union_value_of_no_member_type_is_one_problem_at_its_key(write_config) -> None:
    # pydantic names each member it tried (`data.target.str`, `data.target.dict[str,str]`): one problem at the key instead.
    config = write_config(
        {"data": {"source": "csv", "path": "t.csv", "target": "y", **{k: None for k in ("generator", "means", "cov", "samples_per_class")}}}
    )
    with pytest.raises(ConfigError) as info:
        load_config(config, ["data.target=null"])
    [problem] = info.value.problems
    assert (problem.key, problem.message) == ("data.target", "Input should be a valid string or a valid dictionary (got None)")


def test_unknown_source_suggests(write_config) -> None:
    [problem] = problems_of(write_config({"data": {"source": "sklearnn", "name": "iris"}}))
    assert "data.source" in problem and "did you mean `sklearn`" in problem


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("name: [unclosed\n", "YAML syntax error"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("name: x\n  bad: indent\n", "YAML syntax error"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    [problem] = problems_of(path)
    assert message in problem
    assert str(path) in problem


def test_directory_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path)
    assert "is a directory" in problem


def test_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {source: sklearn\nmodel: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line is not None and info.value.problems[0].column is not None


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    [problem] = problems_of(path)
    assert "YAML syntax error" in problem


def test_overrides_are_yaml_values(write_config) -> None:
    config = load_config(
        write_config(), ["train.epochs=5", "compile.optimizer={SGD: {learning_rate: 0.5}}", "model.layers[0].Dense.units=4"]
    )
    assert config.train.epochs == 5
    assert config.compile.optimizer == {"SGD": {"learning_rate": 0.5}}
    assert config.model.layers[0] == {"Dense": {"units": 4, "activation": "relu"}}


def test_bad_override_is_located_at_set(write_config) -> None:
    [problem] = problems_of(write_config(), ["train.epochz=5"])
    assert problem.startswith("--set train.epochz: unknown key")
    assert "did you mean `epochs`" in problem


def test_class_weight_forms(write_config) -> None:
    assert load_config(write_config({"train": {"class_weight": {1: 2}}})).train.class_weight == {1: 2.0}
    assert load_config(write_config({"train": {"class_weight": "balanced"}})).train.class_weight == "balanced"
    # A class name is numbered by the source's class names when the data loads (tests/data/test_training_weights.py).
    assert load_config(write_config({"train": {"class_weight": {"five": 2}}})).train.class_weight == {"five": 2.0}
    [problem] = problems_of(write_config({"train": {"class_weight": {1.5: 2}}}))
    assert "train.class_weight: label 1.5 is not an integer class label or a class name" in problem
    [problem] = problems_of(write_config({"train": {"class_weight": {"out": {"five": 2}}}}))  # per output: labels only
    assert "train.class_weight: label 'five' is not an integer class label" in problem


def test_object_spec_shape_is_checked(write_config) -> None:
    [problem] = problems_of(write_config({"compile": {"optimizer": {"Adam": 1, "SGD": 2}}}))
    assert "compile.optimizer" in problem and "{Name: {kwargs}}" in problem


def test_model_needs_layers_or_factory(write_config) -> None:
    [problem] = problems_of(write_config({"model": {"inputs": None, "layers": None, "name": "m"}}))
    assert "set `inputs` and `layers`, or `factory" in problem


def test_bad_import_path_shape(write_config) -> None:
    problems = problems_of(write_config({"data": {"source": "python", "function": "not a path"}}))
    assert any("data.function" in p for p in problems)


def test_resolved_yaml_round_trips(write_config) -> None:
    config = load_config(write_config({"train": {"class_weight": {1: 2.0}}}))
    again = load_config(write_config(config_to_yaml(config), name="again.yaml"))
    assert again.model_dump() == config.model_dump()


def test_smoke_shrinks_the_run(write_config) -> None:
    config = shrink_for_smoke(load_config(write_config({"train": {"epochs": 9, "initial_epoch": 3}, "model": {"init_from": "base.keras"}})))
    assert (config.train.epochs, config.train.initial_epoch, config.train.steps_per_epoch) == (1, 0, 2)
    assert config.runtime.device == "cpu" and config.evaluate.steps == 2


def test_errors_inside_lists_name_the_index(write_config) -> None:
    problems = problems_of(
        write_config(
            {
                "model": {"layers": ["Flatten", {"Dense": {"units": 3}, "inputs": 5}]},
                "data": {"preprocess": [{"reshape": [2]}, {"scale": 0}]},
            }
        )
    )
    joined = "\n".join(problems)
    assert "model.layers[1]: `inputs` of a layer must be a name" in joined
    assert "data.preprocess[1].scale: Input should be greater than 0" in joined
    [problem] = problems_of(write_config(), ["data.preprocess=[{cast: float32}, {scale: -1}]"])
    assert problem.startswith("--set data.preprocess[1].scale")


def test_a_bare_metric_gets_one_clear_message(write_config) -> None:
    [problem] = problems_of(write_config({"compile": {"metrics": "accuracy"}}))
    assert "compile.metrics: expected a list of metrics, e.g. [accuracy]" in problem


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("adam", ("adam", {}, None)),
        ("pkg.mod:Name", ("pkg.mod:Name", {}, None)),
        ({"Adam": {"learning_rate": 0.1}}, ("Adam", {"learning_rate": 0.1}, None)),
        ({"Adam": None}, ("Adam", {}, None)),
        ({"class_name": "Adam", "config": {"learning_rate": 0.1}}, ("Adam", {"learning_rate": 0.1}, "self")),
        ({"class_name": "Adam"}, ("Adam", {}, "self")),
        ({"a": 1, "b": 2}, ("", {}, None)),  # no spec: read leniently (a run folder's config is data)
        (3, ("", {}, None)),
    ],
)
def test_one_parser_takes_every_object_spec_apart(spec: object, expected: tuple[object, ...]) -> None:
    name, kwargs, keras_dict = split_spec(spec)
    assert (name, kwargs) == expected[:2]
    assert keras_dict is (spec if expected[2] == "self" else None)


def test_one_parser_of_dotted_keys_for_set_and_sweeps() -> None:
    assert dotted_parts("model.layers[2].Dense.units") == ["model", "layers", 2, "Dense", "units"]
    assert dotted_parts("train.callbacks[0][1]") == ["train", "callbacks", 0, 1]


# --------------------------------------------------------------------------- #23: what validate passed and train then failed on, or trained wrongly

CSV = {"source": "csv", "path": "t.csv", "target": "label", "generator": None, "means": None, "cov": None, "samples_per_class": None}
RANDOM = {"generator": "random", "means": None, "cov": None, "samples_per_class": None, "x_shape": [2], "classes": 3, "samples": 50}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"compile": {"metrics": [["accuracy"], ["mse"]]}},
            "compile.metrics: a list per output (2 lists), but the model has one output: give one flat list, e.g. [accuracy]",
        ),
        (
            {"compile": {"metrics": [None]}},
            "compile.metrics: a metric can't be null: leave it out (null stands for `no metrics` only in a list per output)",
        ),
        (
            {"compile": {"weighted_metrics": ["accuracy", ["mse"]]}},
            "compile.weighted_metrics: give a flat list of metrics, or one list per output (a list of lists), not both in one list",
        ),
        (
            {"data": {**CSV, "features": ["a", "label"]}},
            "data.features: `label` is the target and also a feature: the model would be given the answer",
        ),
        (
            {"data": {**CSV, "sample_weight": "label"}},
            "data.sample_weight: `label` is the target column: a column holds the targets or the weights, not both",
        ),
        (
            {"data": {**CSV, "features": ["a", "w"], "sample_weight": "w"}},
            "data.sample_weight: `w` is also listed under features: the weights are never a feature",
        ),
        (
            {"data": {**CSV, "features": ["a", "b"], "column_types": {"lable": "int64"}}},
            "data.column_types.lable: `lable` is neither a target nor a feature column did you mean `label`? targets: label; features: a, b",
        ),
        ({"data": {**CSV, "test_path": "u.csv", "test_fraction": 0.2}}, "data.test_fraction: give test_path or test_fraction, not both"),
        ({"data": {**CSV, "encoding": "utf-61"}}, "data.encoding: unknown text encoding `utf-61`: e.g. utf-8, latin-1, cp1252, utf-16"),
        (
            {"data": {**CSV, "encoding": "utf-16", "stream": True}},
            "data.stream: the streamed reader splits lines as bytes: it needs an ASCII-compatible encoding, not utf-16",
        ),
        (
            {"data": {"preprocess": [{"cast": "object"}]}},
            "data.preprocess[0].cast: cannot cast features to `object`: one of: float16, float32, float64, int8, int16, int32, int64, uint8, uint16, bool",
        ),
        (
            {"data": {"preprocess": [{"cast": "complex64"}]}},
            "data.preprocess[0].cast: cannot cast features to `complex64`: one of: float16",
        ),
        (
            {"data": {"preprocess": [{"cast": "float23"}]}},
            "data.preprocess[0].cast: cannot cast features to `float23`: did you mean `float32`?",
        ),
        (
            {"data": {"preprocess": [{"scale": "16"}]}},
            "data.preprocess[0].scale: expected a number, got the text '16': write it without quotes",
        ),
        ({"data": {"test_fraction": "0.2"}}, "data.test_fraction: expected a number, got the text '0.2': write it without quotes"),
        ({"data": {**RANDOM, "x_shape": [-1]}}, "data.x_shape: each dimension must be at least 1 (a synthetic shape infers none), got -1"),
        ({"data": {**RANDOM, "y_shape": {"out": [0]}, "classes": None}}, "data.y_shape: each dimension must be at least 1"),
        ({"data": {**RANDOM, "classes": 0}}, "data.classes: at least 2 classes (labels are drawn from [0, classes)), got 0"),
        (
            {"data": {"cov": [[1, 2], [2, 1]]}},
            "data.cov: cov is not positive semi-definite (smallest eigenvalue -1): no distribution has this covariance",
        ),
        ({"data": {"cov": [[1, 0.5], [0, 1]]}}, "data.cov: cov must be symmetric: a covariance matrix equals its transpose"),
        (
            {"model": {"layers": [{"Dense": {"units": True}}, {"Dense": {"units": 3, "activation": "softmax"}}]}},
            "model.layers[0]: `units: true` is a boolean where Keras takes a number (YAML reads true/false/yes/no/on/off as booleans)",
        ),
        (
            {"model": {"outputs": []}},
            "model.outputs: an empty list names no output: list the layers whose outputs the model returns, or leave `outputs` out for the last layer",
        ),
    ],
)
def test_validate_refuses_what_train_would_fail_on_or_get_wrong(write_config, changes, message) -> None:
    problems = problems_of(write_config(changes))
    assert len(problems) == 1 and message in problems[0], problems


def test_what_these_rules_still_accept(write_config) -> None:
    two_outputs = {
        "inputs": {"x": [2]},
        "layers": [{"Dense": {"units": 3, "activation": "softmax", "name": "a"}}, {"Dense": {"units": 1, "name": "b", "inputs": "x"}}],
        "outputs": ["a", "b"],
    }
    config = load_config(
        write_config({"model": two_outputs, "compile": {"loss": ["sparse_categorical_crossentropy", "mse"], "metrics": [None, ["mae"]]}})
    )
    assert config.compile.metrics == [None, ["mae"]]
    [problem] = problems_of(
        write_config({"model": two_outputs, "compile": {"loss": ["sparse_categorical_crossentropy", "mse"], "metrics": ["accuracy"]}})
    )
    assert "compile.metrics: 1 metrics for a model with 2 outputs: Keras takes a list as one entry per output" in problem
    assert (
        load_config(write_config({"data": {"cov": [[1, 1], [1, 1]], "preprocess": [{"scale": 16}, {"cast": "float16"}]}}))
        .data.preprocess[0]
        .scale
        == 16.0
    )
    csv = {**CSV, "column_types": {"label": "string"}, "encoding": "utf-16-le"}
    assert load_config(write_config({"data": csv})).data.column_types == {"label": "string"}  # type: ignore[union-attr]
