"""The root `Config`: the sections together, where its keys came from, its paths; the rules across sections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PrivateAttr

from kerasrun.config.csv_types import DTYPE_KINDS, column_types_problems, group_type, input_type_problem, mixed_group_problems
from kerasrun.config.data import CsvData, DataConfig, csv_columns, csv_targets, validation_key
from kerasrun.config.fields import Strict, check_run_name
from kerasrun.config.model import CompileConfig, ModelConfig, input_shape_and_dtype
from kerasrun.config.sources import declared_names
from kerasrun.config.train import EvaluateConfig, OutputConfig, RuntimeConfig, TrainConfig
from kerasrun.config.urls import url_of
from kerasrun.config.yamlsource import SourceMap
from kerasrun.errors import Problem
from kerasrun.imports import IMPORT_PATH, suggest


class Config(Strict):
    """A whole kerasrun experiment."""

    name: Annotated[str, AfterValidator(check_run_name)] = Field(max_length=100, description="run name, used in the run folder name")
    seed: int = Field(42, ge=0, le=2**32 - 1, strict=True, description="NumPy's and Keras's seeds take at most 32 bits")
    data: DataConfig
    model: ModelConfig
    compile: CompileConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    _source: SourceMap | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def source(self) -> SourceMap:
        """Where each key of this config came from (for error messages)."""
        return self._source or SourceMap(file="<config>")

    def problem(self, loc: tuple[Any, ...], message: str, hint: str | None = None) -> Problem:
        """A Problem located at `loc` in the file this config came from."""
        return self.source.problem(loc, message, hint)

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder (a URL: see `resolve_location`)."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self._base_dir / path)

    def resolve_location(self, value: str) -> str:
        """A path from the config as text: a URL (`gs://b/x`) as written, never joined to the config's folder; else `resolve_path`."""
        return url_of(value) or str(self.resolve_path(value))


def check_across_sections(config: Config) -> list[Problem]:
    """Rules one section can't check alone."""
    problems = []
    if config.train.initial_epoch and config.model.init_from is None:
        problems.append(
            config.problem(
                ("train", "initial_epoch"),
                "initial_epoch without model.init_from would train a fresh model while numbering its epochs from there",
                "to continue a run, `kerasrun resume RUN_DIR --set train.epochs=N`; "
                "to start from a run's weights, set model.init_from (initial_epoch then numbers the epochs on)",
            )
        )
    if config.train.validation_data == "test" and (own := validation_key(config.data)) is not None:
        problems.append(two_validations(config, f"data.{own}"))
    if isinstance(config.data, CsvData):  # here, not in CsvData: problems located at the mapping's own keys
        problems += csv_type_problems(config, config.data)
    model_inputs = list(config.model.inputs or {}) if config.model.factory is None else []
    model_outputs = list(config.model.outputs or []) if config.model.factory is None else []  # outputs: layer names
    inputs, outputs = declared_names(config.data)
    for side, declared, names in (("input", inputs, model_inputs), ("output", outputs, model_outputs)):
        for key, given in declared.items() if names else ():
            problems += [
                config.problem(
                    ("data", *key, name), f"the model has no {side} `{name}`", suggest(name, names) or f"{side}s: {', '.join(names)}"
                )
                for name in given
                if name not in names
            ]
    count = config.model.output_count()
    if count is not None:
        for metrics_key in ("metrics", "weighted_metrics"):
            if problem := metrics_per_output_problem(getattr(config.compile, metrics_key), count):
                problems.append(config.problem(("compile", metrics_key), problem))
    return problems


def csv_type_problems(config: Config, data: CsvData) -> list[Problem]:
    """column_types names targets and features; an input's columns share a type; each model input takes its columns' type and count."""

    def locate(loc: tuple[Any, ...], message: str, hint: str | None) -> Problem:
        return config.problem(("data", *loc), message, hint)

    listed = csv_columns(data.features) if data.features else None  # None: every column but the targets, known from the file
    problems = column_types_problems(data.column_types, csv_targets(data.target), listed, data.sample_weight, locate)
    if not data.features:
        return problems
    groups: dict[Any, list[str]] = data.features if isinstance(data.features, dict) else {None: data.features}
    problems += mixed_group_problems(groups, data.column_types, locate, default=False)
    inputs = (config.model.inputs or {}) if config.model.factory is None else {}
    for group, columns in groups.items():
        name = group if group is not None else next(iter(inputs)) if len(inputs) == 1 else None
        column_type = group_type(data.column_types, columns)
        if name not in inputs or column_type is None:
            continue
        shape, dtype = input_shape_and_dtype(inputs[name])
        cast, step_problems = preprocessed_type(config, column_type, columns) if group is None else (None, [])
        problems += step_problems
        if found := input_type_problem(name, dtype, columns, column_type, data.column_types, cast):
            problems.append(locate(("features", group) if group is not None else ("features",), *found))
        if group is not None and shape not in ((len(columns),), (None,)):
            problems.append(
                config.problem(
                    ("model", "inputs", name),
                    f"model input `{name}` has per-sample shape {list(shape)}, but data.features.{name} gives it "
                    f"{len(columns)} column{'s' * (len(columns) > 1)}",
                    f"shape: [{len(columns)}]",
                )
            )
    return problems


def preprocessed_type(config: Config, column_type: str, columns: list[str]) -> tuple[str | None, list[Problem]]:
    """The dtype data.preprocess casts features of `column_type` to (None: not cast), and its steps that can't apply to text."""
    cast: str | None = None
    problems = []
    for index, step in enumerate(config.data.preprocess):
        key = "scale" if step.scale is not None else "cast" if step.cast is not None else None
        if key and column_type == "string":
            problems.append(
                config.problem(
                    ("data", "preprocess", index, key),
                    f"{key} applies to numbers, but the features are text (column `{columns[0]}` is string)",
                    "preprocess text inside the model, e.g. StringLookup, Hashing, TextVectorization",
                )
            )
        elif step.cast is not None:
            cast = step.cast
        elif step.scale is not None and DTYPE_KINDS.get(cast or column_type) == "integers":
            cast = "float32"  # scale divides integers as float32
    return cast, problems


def two_validations(config: Config, own: str, drop: str | None = None) -> Problem:
    """`train.validation_data: test` while the source gives validation data of its own (`own`): one of them would be ignored.

    `drop` says how to give up the source's own validation data (default: remove `own`).
    """
    return config.problem(
        ("train", "validation_data"),
        f"`test` validates on the test split, but the data source also gives validation data ({own}): "
        "kerasrun would have to ignore one of them",
        f"remove one: drop train.validation_data to validate on {own}, or {drop or f'remove {own}'} to validate on the test split",
    )


def metrics_per_output_problem(metrics: Any, outputs: int) -> str | None:
    """Why a metrics list doesn't fit a model of `outputs` outputs, or None.

    Keras flattens a list of lists into one list for a model with one output, and takes a flat
    list as one metric per output when it is as long as the outputs: anything else fails at the first step.
    """
    if not isinstance(metrics, list) or not metrics:
        return None
    per_output = any(isinstance(item, list) or item is None for item in metrics)
    if outputs == 1 and per_output:
        return f"a list per output ({len(metrics)} lists), but the model has one output: give one flat list, e.g. [accuracy]"
    if outputs > 1 and len(metrics) != outputs:
        form = "lists" if per_output else "metrics"
        return (
            f"{len(metrics)} {form} for a model with {outputs} outputs: Keras takes a list as one entry per output; "
            "give one list per output, or {output: [metrics]}"
        )
    return None


def import_paths(config: Config) -> list[str]:
    """Every `module:name` a config names (what kerasrun would import from it), in order of appearance."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and IMPORT_PATH.match(value) and value not in found:
            found.append(value)

    walk(config.model_dump(mode="json"))
    return found
