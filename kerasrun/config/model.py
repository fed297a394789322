"""The `model` section (a layer graph or a factory, `init_from`) and the `compile` section."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from kerasrun.config.fields import (
    MAX_LAYERS,
    MAX_STEPS,
    SPEC_JSON_SCHEMA,
    Finite,
    ImportPath,
    LayerName,
    ObjectSpec,
    Size,
    Strict,
    check_layer_name,
)
from kerasrun.config.spec import check_object_spec, split_layer_entry, split_spec

# Layer arguments whose values are Keras objects themselves (resolved by registry.resolve_nested).
NESTED_OBJECT_SUFFIXES = ("_initializer", "_regularizer", "_constraint", "activation")
# Layer arguments that are numbers in every Keras layer that has them: a boolean there is a mistake (Dense(units=True) has 1 unit).
NUMERIC_LAYER_ARGS = (
    "units",
    "filters",
    "kernel_size",
    "strides",
    "pool_size",
    "dilation_rate",
    "rate",
    "dropout",
    "recurrent_dropout",
    "num_heads",
    "key_dim",
    "value_dim",
    "input_dim",
    "output_dim",
    "max_tokens",
    "num_tokens",
    "output_sequence_length",
    "depth_multiplier",
    "epsilon",
    "momentum",
    "stddev",
    "factor",
    "height",
    "width",
    "size",
    "target_shape",
    "num_bins",
    "groups",
)
# Optimizer arguments that can't be negative (Keras accepts them all the same).
NON_NEGATIVE_OPTIMIZER_ARGS = ("learning_rate", "momentum", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "epsilon")
# Optimizer arguments that are numbers (or a schedule, given as a mapping or an import path, never as number text).
NUMERIC_OPTIMIZER_ARGS = (*NON_NEGATIVE_OPTIMIZER_ARGS, "beta_1", "beta_2", "rho", "ema_momentum", "initial_accumulator_value")


def is_number_text(text: str) -> bool:
    """Whether `text` reads as a number (`'0.01'`, `' 1e-3 '`): a quoted number in YAML."""
    try:
        return math.isfinite(float(text))  # `nan` and `inf` unquoted are text to YAML 1.1 too: not "quoted"
    except ValueError:
        return False


def check_layer_entry(entry: Any) -> Any:
    """A layer entry has an object shape (and a usable `name`), plus an optional `inputs` naming what it takes."""
    spec, refs = split_layer_entry(entry)
    check_object_spec(spec)
    kwargs = split_spec(spec)[1]
    if "name" in kwargs:
        check_layer_name(kwargs["name"])
    for key in NUMERIC_LAYER_ARGS:
        if isinstance(kwargs.get(key), bool):
            value = str(kwargs[key]).lower()
            raise ValueError(f"`{key}: {value}` is a boolean where Keras takes a number (YAML reads true/false/yes/no/on/off as booleans)")
    for key, value in kwargs.items():
        if key.endswith(NESTED_OBJECT_SUFFIXES) and isinstance(value, (dict, list)):
            try:
                check_object_spec(value)
            except ValueError:
                raise ValueError(f"`{key}` must be a name or {{Name: {{kwargs}}}}, got {value!r}") from None
    if refs is not None and not (isinstance(refs, str) or (isinstance(refs, list) and refs and all(isinstance(r, str) for r in refs))):
        raise ValueError("`inputs` of a layer must be a name or a list of names (model inputs or earlier layers)")
    if isinstance(entry, dict) and "adapt" in entry and not isinstance(entry["adapt"], bool):
        raise ValueError("`adapt` of a layer must be true or false")
    return entry


LayerEntry = Annotated[Any, AfterValidator(check_layer_entry), Field(json_schema_extra=SPEC_JSON_SCHEMA)]


class ActivationMetric(Strict):
    """A statistic of a named layer's output, logged as `<layer>_<statistic>` (Keras 3's stand-in for add_metric)."""

    layer: str = Field(description="name of a layer in model.layers")
    statistic: Literal["mean", "std", "min", "max", "zero_fraction", "mean_abs"] = "std"
    name: LayerName | None = Field(None, description="metric name; default <layer>_<statistic>")


class InitFrom(Strict):
    """Weights to start from: a run folder, a .keras model or a .weights.h5 file — or the newest run of a name."""

    path: str | None = Field(None, description="a run folder, a .keras file or a .weights.h5 file (relative to the config file)")
    run: str | None = Field(None, description="instead of path: the newest completed run of this name under the runs folder")
    skip: list[str] = Field(default_factory=list, description="layers that keep their freshly built weights, e.g. a new head")

    @model_validator(mode="before")
    @classmethod
    def accept_a_path(cls, value: Any) -> Any:
        """`init_from: runs/base` is short for `init_from: {path: runs/base}`."""
        return {"path": value} if isinstance(value, str) else value

    @field_validator("skip", mode="before")
    @classmethod
    def accept_no_list(cls, value: Any) -> Any:
        """`skip:` left empty (null) is no layers."""
        return [] if value is None else value

    @model_validator(mode="after")
    def check_one_source(self) -> InitFrom:
        """Exactly one of path and run."""
        if (self.path is None) == (self.run is None):
            raise ValueError("set `path` (a run folder, .keras or .weights.h5 file) or `run` (a run name), not both")
        return self


class InputSpec(Strict):
    """A model input with a dtype other than float32: `{shape: [], dtype: string}` takes one text per sample."""

    shape: list[Size | None] = Field(default_factory=list, description="per-sample shape; [] for one value (a text) per sample")
    dtype: Literal["float32", "float16", "bfloat16", "float64", "int32", "int64", "uint8", "bool", "string"] = "float32"


def input_shape_and_dtype(spec: list[Any] | InputSpec) -> tuple[tuple[Any, ...], str]:
    """A `model.inputs` value as (per-sample shape, dtype)."""
    return (tuple(spec.shape), spec.dtype) if isinstance(spec, InputSpec) else (tuple(spec), "float32")


def text_inputs(config: Any) -> set[str]:
    """Names of the model inputs declared `dtype: string`: their arrays hold text."""
    return {name for name, spec in (config.model.inputs or {}).items() if isinstance(spec, InputSpec) and spec.dtype == "string"}


class ModelConfig(Strict):
    """Either `inputs` + `layers` (a functional chain) or a Python `factory`."""

    name: LayerName | None = None
    inputs: dict[LayerName, list[Size | None] | InputSpec] | None = Field(
        None, description="input name -> per-sample shape, or {shape, dtype} (dtype string for text)"
    )
    layers: list[LayerEntry] = Field(
        default_factory=list,
        max_length=MAX_LAYERS,
        description=f"layers applied in order (at most {MAX_LAYERS}; a bigger graph belongs in a factory); an entry may add `inputs: name` or `inputs: [a, b]`",
    )
    outputs: list[str] | None = Field(
        None, description="names of the layers whose outputs are the model's outputs (default: the last layer)"
    )
    activation_metrics: list[ActivationMetric] = Field(default_factory=list, description="statistics of layer outputs, logged every epoch")
    factory: ImportPath | None = Field(None, description="module:function returning a keras.Model")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")
    init_from: InitFrom | None = Field(None, description="load weights by layer name before training (transfer learning, fine-tuning)")

    @field_validator("outputs")
    @classmethod
    def check_outputs(cls, value: list[str] | None) -> list[str] | None:
        """`outputs: []` names no output: leave the key out for the last layer."""
        if value is not None and not value:
            raise ValueError(
                "an empty list names no output: list the layers whose outputs the model returns, or leave `outputs` out for the last layer"
            )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a layer is named twice: each output once")
        return value

    def output_count(self) -> int | None:
        """How many outputs the model has, when the config alone tells (a layer graph): None for a factory."""
        if self.factory is not None:
            return None
        return len(self.outputs) if self.outputs else 1

    @model_validator(mode="after")
    def check_kind(self) -> ModelConfig:
        """A model is built from layers or from a factory, not both."""
        if self.factory is None and not (self.inputs and self.layers):
            raise ValueError("set `inputs` and `layers`, or `factory: module:function`")
        if self.factory is not None and (self.inputs or self.layers):
            raise ValueError("set either `factory` or `inputs` + `layers`, not both")
        if self.factory is not None and self.activation_metrics:
            raise ValueError("activation_metrics attach to `layers`; a factory model can own metrics itself")
        return self


class CompileConfig(Strict):
    """Arguments of `model.compile`."""

    optimizer: ObjectSpec = "rmsprop"
    loss: ObjectSpec = Field(description="one loss; or per output: a list in output order, or {output_name: loss}; null for no loss")
    metrics: list[Any] | dict[str, Any] = Field(
        default_factory=list, description="a list; per output: a list of lists or {output_name: [...]}"
    )
    weighted_metrics: list[Any] | dict[str, Any] = Field(default_factory=list)
    loss_weights: list[Finite] | dict[str, Finite] | None = None
    steps_per_execution: int = Field(
        32,
        ge=1,
        le=MAX_STEPS,
        strict=True,
        description="train steps per tf.function call; 32 measured 2.2x faster than 1 with identical numbers",
    )
    jit_compile: bool | Literal["auto"] = "auto"

    @field_validator("optimizer")
    @classmethod
    def check_spec(cls, value: Any) -> Any:
        """The optimizer is an object spec whose numbers Keras would take but can only be mistakes are refused."""
        check_object_spec(value)
        for key, number in split_spec(value)[1].items():
            if isinstance(number, str) and key in NUMERIC_OPTIMIZER_ARGS and is_number_text(number):
                raise ValueError(f"`{key}: '{number}'` is quoted, so it is text, not a number: write it without quotes")
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue  # schedules, names, nested specs: Keras checks those
            if not math.isfinite(number):
                raise ValueError(f"`{key}: {number}` is not a finite number")
            if key in NON_NEGATIVE_OPTIMIZER_ARGS and number < 0:
                raise ValueError(f"`{key}: {number}` is negative: a negative {key.replace('_', ' ')} would climb the loss")
        return value

    @field_validator("loss")
    @classmethod
    def check_loss(cls, value: Any) -> Any:
        """One loss spec, a list of them (null allowed), or a mapping (checked against the outputs at build)."""
        if isinstance(value, list):
            return [v if v is None else check_object_spec(v) for v in value]
        if isinstance(value, dict) and "class_name" not in value and len(value) > 1:
            return {k: v if v is None else check_object_spec(v) for k, v in value.items()}
        if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), str):
            return {k: check_object_spec(v) for k, v in value.items()}  # {output: loss}: a loss's kwargs are a mapping, never text
        try:
            return check_object_spec(value)
        except ValueError:
            raise ValueError(
                "expected a loss: a name (`mse`), an import path (`pkg.module:name`), `{Name: {kwargs}}`, Keras's "
                "`{class_name: ..., config: {...}}`; or per output a list in output order, or `{output_name: loss}`"
            ) from None

    @field_validator("metrics", "weighted_metrics", mode="before")
    @classmethod
    def check_metric_container(cls, values: Any) -> Any:
        """One message for a metric given bare, instead of one per accepted container."""
        if not isinstance(values, (list, dict)):
            raise ValueError(f"expected a list of metrics, e.g. [{values}] (or {{output: [...]}} per output); got {values!r}")
        return values

    @field_validator("metrics", "weighted_metrics")
    @classmethod
    def check_specs(cls, values: Any) -> Any:
        """Metric specs: a flat list, a list of lists (per output), or {output: spec or list}."""

        def check(item: Any) -> Any:
            return [check_object_spec(v) for v in item] if isinstance(item, list) else (item if item is None else check_object_spec(item))

        if isinstance(values, dict):
            return {k: check(v) for k, v in values.items()}
        per_output = [isinstance(v, list) for v in values if v is not None]
        if any(per_output) and not all(per_output):
            raise ValueError("give a flat list of metrics, or one list per output (a list of lists), not both in one list")
        if not any(per_output) and None in values:
            raise ValueError("a metric can't be null: leave it out (null stands for `no metrics` only in a list per output)")
        return [check(v) for v in values]
