"""The config schema (pydantic, extra="forbid" everywhere) and `load_config(path, overrides)`."""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from kerasrun.config.compose import read_config_file
from kerasrun.config.problems import SCIENTIFIC, describe_validation_error
from kerasrun.config.yamlsource import SourceMap, format_key, load_yaml_value, parse_yaml
from kerasrun.errors import Collector, ConfigError, Problem
from kerasrun.startup import make_config_folder_importable

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
# Callback arguments that name files; relative ones are placed inside the run folder.
CALLBACK_PATH_KEYS = ("filepath", "filename", "log_dir", "backup_dir")


def check_object_spec(value: Any) -> Any:
    """Accept `name`, `module:Name`, `{Name: {kwargs}}` or Keras's `{class_name:, config:}`."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict):
        if "class_name" in value:
            check_numbers_are_numbers(value.get("config"))
            return value
        if len(value) == 1:
            ((name, kwargs),) = value.items()
            if isinstance(name, str) and (kwargs is None or isinstance(kwargs, dict)):
                check_numbers_are_numbers(kwargs)
                return value
    raise ValueError(
        "expected a name (`adam`), an import path (`pkg.module:Name`), `{Name: {kwargs}}` or Keras's `{class_name: ..., config: {...}}`"
    )


def object_kwargs(spec: Any) -> dict[str, Any]:
    """The keyword arguments of an object spec (`{Name: {kwargs}}` or Keras's `{class_name:, config:}`); {} for a bare name."""
    if not isinstance(spec, dict):
        return {}
    kwargs = spec.get("config") if "class_name" in spec else next(iter(spec.values()), None)
    return kwargs if isinstance(kwargs, dict) else {}


def check_numbers_are_numbers(kwargs: Any) -> None:
    """`learning_rate: 1e-3` is the text "1e-3" to YAML 1.1: say so here, not as a TypeError inside Keras."""
    for key, value in kwargs.items() if isinstance(kwargs, dict) else ():
        if isinstance(value, str) and SCIENTIFIC.match(value.strip()):
            raise ValueError(
                f"`{key}: {value}` is text to YAML, not a number: write it with a dot and a signed exponent, e.g. {float(value):.1e}"
            )


ENTRY_KEYS = ("inputs", "adapt")  # keys of a `model.layers` entry beside the layer itself


def split_layer_entry(entry: Any) -> tuple[Any, Any]:
    """(layer spec, its `inputs` reference or None) from a `model.layers` entry."""
    if isinstance(entry, dict) and any(key in entry for key in ENTRY_KEYS) and "class_name" not in entry:
        return {k: v for k, v in entry.items() if k not in ENTRY_KEYS}, entry.get("inputs")
    return entry, None


def adapt_flag(entry: Any) -> bool | None:
    """A `model.layers` entry's `adapt`: true/false as written, None when not given (kerasrun decides)."""
    return entry.get("adapt") if isinstance(entry, dict) and "class_name" not in entry else None


ObjectSpec = Annotated[Any, Field(json_schema_extra={"anyOf": [{"type": "string"}, {"type": "object"}]})]

# Upper bounds where a larger value can only be a mistake (each message names its bound).
MAX_EPOCHS = 1_000_000
MAX_BATCH = 1 << 24
MAX_STEPS = 1 << 31
MAX_SAMPLES = 1 << 31
MAX_CLASSES = 1_000_000
MAX_LAYERS = 1000  # Keras traces a 1,000-layer chain in ~3 minutes and 3.5 GB here; larger graphs belong in a factory
# Layer arguments whose values are Keras objects themselves (resolved by registry.resolve_nested).
NESTED_OBJECT_SUFFIXES = ("_initializer", "_regularizer", "_constraint", "activation")
# Optimizer arguments that can't be negative (Keras accepts them all the same).
NON_NEGATIVE_OPTIMIZER_ARGS = ("learning_rate", "momentum", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "epsilon")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Names Keras and TensorFlow accept for layers and inputs (TensorFlow's scope names, without Keras's forbidden `/`).
LAYER_NAME = re.compile(r"^[A-Za-z0-9_.>-]+$")


def not_a_boolean(value: Any) -> Any:
    """YAML reads true/false/yes/no/on/off as booleans: never let one pass as a number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()} (YAML reads true/false/yes/no/on/off as booleans)")
    return value


def check_run_name(value: str) -> str:
    """A run name becomes part of a folder name: letters, digits and _ . - only."""
    if not RUN_NAME.match(value):
        raise ValueError(f"{value!r} can't name a run folder: letters, digits and _ . - only, starting with a letter or digit")
    return value


def check_layer_name(value: Any) -> Any:
    """A name Keras and TensorFlow accept for a layer or an input."""
    if not isinstance(value, str) or not LAYER_NAME.match(value) or len(value) > 200:
        raise ValueError(
            f"{value!r} is not a usable layer name: letters, digits and _ . > - only, at most 200 characters "
            "(TensorFlow's scope names; Keras forbids `/`)"
        )
    return value


Real = Annotated[float, BeforeValidator(not_a_boolean)]
Finite = Annotated[float, BeforeValidator(not_a_boolean), Field(allow_inf_nan=False)]
Fraction = Annotated[float, BeforeValidator(not_a_boolean), Field(gt=0, lt=1, allow_inf_nan=False)]
Size = Annotated[int, Field(ge=1, le=MAX_SAMPLES, strict=True)]
Dimension = Annotated[int, Field(ge=-1, le=MAX_SAMPLES, strict=True)]  # -1: inferred (reshape)
LayerName = Annotated[str, AfterValidator(check_layer_name)]


def check_layer_entry(entry: Any) -> Any:
    """A layer entry has an object shape (and a usable `name`), plus an optional `inputs` naming what it takes."""
    spec, refs = split_layer_entry(entry)
    check_object_spec(spec)
    kwargs = object_kwargs(spec)
    if "name" in kwargs:
        check_layer_name(kwargs["name"])
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


def check_callback_entry(spec: Any) -> Any:
    """A callback spec whose relative file arguments stay inside the run folder; no BackupAndRestore."""
    check_object_spec(spec)
    kwargs: dict[str, Any]
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif "class_name" in spec:
        name, kwargs = str(spec["class_name"]), spec.get("config") or {}
    else:
        ((name, kwargs),) = spec.items()
        kwargs = kwargs or {}
    if name.rsplit(":", 1)[-1] == "BackupAndRestore":
        raise ValueError(
            "kerasrun checkpoints the run itself (output.checkpoint) and continues it with `kerasrun resume RUN_DIR`, "
            "in the same folder and bit for bit; remove BackupAndRestore"
        )
    for key in CALLBACK_PATH_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str) and not PurePath(value).is_absolute() and ".." in PurePath(value).parts:
            raise ValueError(
                f"`{key}: {value}` leaves the run folder; relative paths are placed inside it (use an absolute path to write elsewhere)"
            )
    return spec


CallbackEntry = Annotated[
    Any, AfterValidator(check_callback_entry), Field(json_schema_extra={"anyOf": [{"type": "string"}, {"type": "object"}]})
]
LayerEntry = Annotated[Any, AfterValidator(check_layer_entry), Field(json_schema_extra={"anyOf": [{"type": "string"}, {"type": "object"}]})]
ImportPath = Annotated[str, Field(pattern=IMPORT_PATH.pattern, description="package.module:name")]
DeviceName = Annotated[str, Field(pattern=r"^(auto|cpu|gpu|gpu:\d+)$")]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- data


class PreprocessStep(Strict):
    """One preprocessing step; exactly one key is set."""

    reshape: list[Dimension] | None = Field(None, description="new per-sample shape of the features, -1 allowed")
    scale: Real | None = Field(None, description="divide the features by this number", gt=0, allow_inf_nan=False)
    cast: str | None = Field(None, description="cast the features to this dtype, e.g. float32")
    one_hot: int | None = Field(
        None, description="one-hot encode the integer targets into this many classes", ge=2, le=MAX_CLASSES, strict=True
    )

    @model_validator(mode="after")
    def check_one_key(self) -> PreprocessStep:
        """Each list entry must be a single step."""
        if sum(getattr(self, name) is not None for name in type(self).model_fields) != 1:
            raise ValueError("each preprocess entry must set exactly one of reshape, scale, cast, one_hot")
        return self


# Keys of the sources read while training (streamed CSV, streamed image folders, TFRecord).
ShuffleBuffer = Annotated[int, Field(ge=1, le=1 << 26, strict=True, description="streamed: rows the training shuffle holds at once")]
StreamCache = Annotated[
    Literal["none", "file"],
    Field(description="streamed: `file` writes the decoded rows to the run folder's cache/ on the first pass and reads them from there"),
]


class DataCommon(Strict):
    """Keys shared by every data source."""

    preprocess: list[PreprocessStep] = Field(
        default_factory=list, description="steps applied to features (and one_hot to targets), in order"
    )
    allow_nonfinite: bool = Field(False, description="accept NaN/inf in the input arrays instead of refusing them")


class KerasData(DataCommon):
    """A `keras.datasets` dataset, read offline from a data directory when it is there."""

    source: Literal["keras"]
    name: str = Field(description="keras.datasets name, e.g. mnist, fashion_mnist, cifar10")
    dir: str | None = Field(None, description="data directory; default $KERASRUN_DATA_DIR")


class NpzData(DataCommon):
    """Arrays from a NumPy .npz file."""

    source: Literal["npz"]
    path: str
    x: str | dict[str, str] = Field("x_train", description="array key; for several inputs {input name: key}")
    y: str | dict[str, str] = Field("y_train", description="array key; for several outputs {output name: key}")
    x_val: str | dict[str, str] | None = Field("x_val", description="validation features, used when the file has them")
    y_val: str | dict[str, str] | None = Field("y_val", description="validation targets, used when the file has them")
    x_test: str | dict[str, str] | None = "x_test"
    y_test: str | dict[str, str] | None = "y_test"
    sample_weight: str | None = Field(None, description="key of per-sample training weights")


class CsvData(DataCommon):
    """A table in a CSV file: feature columns and one target column."""

    source: Literal["csv"]
    path: str
    target: str | dict[str, str] = Field(description="target column; {output name: column} for several outputs")
    features: list[str] | dict[str, list[str]] | None = Field(
        None, description="feature columns (default: every other column); {input name: columns} for several inputs"
    )
    test_path: str | None = None
    test_fraction: Fraction | None = None
    validation_path: str | None = Field(None, description="a CSV file of validation rows (instead of train.validation_split)")
    sample_weight: str | None = Field(None, description="a column of per-row training weights (not a feature)")
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = Field("utf-8", description="text encoding of the files, e.g. latin-1")
    stream: bool = Field(False, description="read with tf.data while training instead of loading the file into memory")
    column_types: dict[str, Literal["float32", "int64", "string"]] = Field(
        default_factory=dict, description="stream: a target column's type (default: inferred from the first rows)"
    )
    shuffle_buffer: ShuffleBuffer = 10_000
    cache: StreamCache = "none"


class SklearnData(DataCommon):
    """A real dataset bundled with scikit-learn (no network needed)."""

    source: Literal["sklearn"]
    name: Literal["digits", "iris", "breast_cancer", "wine", "diabetes"] = Field(
        description="classification: digits, iris, breast_cancer, wine; regression: diabetes"
    )
    test_fraction: Fraction = 0.2
    stratify: bool = True


class SyntheticData(DataCommon):
    """Seeded generated data: Gaussian `blobs` per class, or `random` arrays."""

    source: Literal["synthetic"]
    generator: Literal["blobs", "random"]
    means: list[list[Finite]] | None = Field(None, description="blobs: one mean vector per class", max_length=MAX_CLASSES)
    cov: list[list[Finite]] | None = Field(None, description="blobs: shared covariance matrix")
    samples_per_class: int | None = Field(None, ge=1, le=MAX_SAMPLES, strict=True, description="blobs: points per class")
    x_shape: list[int] | dict[str, list[int]] | None = Field(
        None, description="random: per-sample feature shape; {input: shape} for several inputs"
    )
    classes: int | dict[str, int] | None = Field(
        None, description="random: integer labels in [0, classes); {output: classes} for class outputs"
    )
    y_shape: list[int] | dict[str, list[int]] | None = Field(
        None, description="random: per-sample float target shape; {output: shape} for float outputs"
    )
    samples: int | None = Field(None, ge=1, le=MAX_SAMPLES, strict=True, description="random: number of training samples")
    test_fraction: Fraction | None = None

    @model_validator(mode="after")
    def check_generator_keys(self) -> SyntheticData:
        """Blobs needs means/cov/samples_per_class; random needs x_shape, samples and classes or y_shape."""
        if self.generator == "blobs":
            missing = [k for k in ("means", "cov", "samples_per_class") if getattr(self, k) is None]
        else:
            missing = [k for k in ("x_shape", "samples") if getattr(self, k) is None]
            if self.classes is None and self.y_shape is None:
                missing.append("classes or y_shape")
        if missing:
            raise ValueError(f"generator {self.generator} needs {', '.join(missing)}")
        if self.generator == "blobs" and self.means is not None and self.cov is not None:
            width = len(self.means[0]) if self.means else 0
            if not self.means or any(len(mean) != width for mean in self.means) or width == 0:
                raise ValueError("means must be a list of mean vectors of one length (one per class)")
            if len(self.cov) != width or any(len(row) != width for row in self.cov):
                raise ValueError(f"cov must be {width}x{width}, matching the means")
        return self


IMAGE_SIZE_MAX = 8192  # pixels per side; more is a typo (or a picture no model input takes whole)


class ClassFolders(DataCommon):
    """Keys of the sources read from one subfolder per class: labels follow the sorted subfolder names."""

    path: str = Field(description="folder with one subfolder per class")
    test_path: str | None = Field(None, description="a folder with the same class subfolders for the test split")
    test_fraction: Fraction | None = Field(None, description="or hold out this seeded fraction, stratified by class, for testing")
    validation_path: str | None = Field(None, description="a folder of the same classes for validation (instead of train.validation_split)")

    @model_validator(mode="after")
    def check_test_keys(self) -> ClassFolders:
        """One way to make a test split."""
        if self.test_path is not None and self.test_fraction is not None:
            raise ValueError("give test_path or test_fraction, not both")
        return self


class ImageFolderData(ClassFolders):
    """A folder of images, one subfolder per class, read with keras.utils.image_dataset_from_directory."""

    source: Literal["image_folder"]
    image_size: list[Annotated[int, Field(ge=1, le=IMAGE_SIZE_MAX, strict=True)]] = Field(
        min_length=2, max_length=2, description="[height, width] every image is resized to"
    )
    color_mode: Literal["grayscale", "rgb", "rgba"] = Field("rgb", description="channels of the decoded images: 1, 3 or 4")
    interpolation: Literal["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic"] = "bilinear"
    crop_to_aspect_ratio: bool = Field(False, description="crop to the target aspect ratio before resizing (no distortion)")
    pad_to_aspect_ratio: bool = Field(False, description="pad to the target aspect ratio before resizing (no distortion)")
    bad_images: Literal["refuse", "skip"] = Field(
        "refuse", description="an image that cannot be decoded: refuse the data (naming it), or skip it and count it"
    )
    memory_limit_mb: int = Field(
        2048,
        ge=0,
        le=1 << 22,
        strict=True,
        description="decoded images are held in memory (float32) up to this size; beyond it (or with 0), streamed from disk",
    )
    shuffle_buffer: ShuffleBuffer = 10_000
    cache: StreamCache = "none"

    @model_validator(mode="after")
    def check_image_keys(self) -> ImageFolderData:
        """One aspect-ratio rule."""
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError("crop_to_aspect_ratio and pad_to_aspect_ratio can't both be true")
        return self


class PythonData(DataCommon):
    """A Python function `module:function` returning arrays or a tf.data.Dataset."""

    source: Literal["python"]
    function: ImportPath
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TextFolderData(ClassFolders):
    """A folder of .txt files, one subfolder per class, read with keras.utils.text_dataset_from_directory."""

    source: Literal["text_folder"]
    max_length: int | None = Field(None, ge=1, le=1 << 30, strict=True, description="keep at most this many characters of each text")
    memory_limit_mb: int = Field(2048, ge=1, le=1 << 22, strict=True, description="the texts are held in memory up to this size")


class TfRecordFeature(Strict):
    """One feature of a tf.train.Example: its dtype and per-example shape (tf.io.FixedLenFeature)."""

    dtype: Literal["float32", "int64", "string"] = Field(description="the Example's list type: float32, int64 or string (bytes)")
    shape: list[Size] = Field(default_factory=list, description="per-example shape; [] for a scalar")


class TfRecordData(DataCommon):
    """tf.train.Example records in TFRecord files (several shards), read by tf.data while training."""

    source: Literal["tfrecord"]
    files: str | list[str] = Field(description="a glob or a list of globs of training shards, relative to the config")
    validation_files: str | list[str] | None = Field(None, description="shards of validation examples (instead of train.validation_split)")
    test_files: str | list[str] | None = Field(None, description="shards of test examples")
    test_fraction: Fraction | None = Field(None, description="or hold out this seeded fraction of the training examples")
    compression: Literal["none", "gzip", "zlib"] = Field("none", description="how the files are compressed")
    features: dict[LayerName, TfRecordFeature] = Field(min_length=1, description="feature name -> {dtype, shape}: what to parse")
    inputs: list[LayerName] = Field(min_length=1, description="features the model takes (one: the input; several: by name)")
    targets: list[LayerName] = Field(min_length=1, description="features the model predicts (one: the target; several: by output name)")
    sample_weight: LayerName | None = Field(None, description="a float feature with each example's training weight")
    shuffle_buffer: ShuffleBuffer = 10_000
    parallel_files: int = Field(4, ge=1, le=1024, strict=True, description="shards read at once, interleaved in a fixed order")
    cache: StreamCache = "none"

    @model_validator(mode="after")
    def check_feature_roles(self) -> TfRecordData:
        """Inputs, targets and the weight are declared features, each in one role."""
        roles = [*self.inputs, *self.targets, *([self.sample_weight] if self.sample_weight else [])]
        unknown = [name for name in roles if name not in self.features]
        if unknown:
            raise ValueError(f"not in features: {', '.join(unknown)}; declare each feature's dtype and shape under features")
        if len(set(roles)) != len(roles):
            raise ValueError("a feature can be an input, a target or the sample weight, not two of these")
        if self.test_files is not None and self.test_fraction is not None:
            raise ValueError("give test_files or test_fraction, not both")
        return self


DataConfig = Annotated[
    KerasData | NpzData | CsvData | SklearnData | SyntheticData | ImageFolderData | TextFolderData | TfRecordData | PythonData,
    Field(discriminator="source"),
]

# --------------------------------------------------------------------------- model / compile


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
        for key, number in object_kwargs(value).items():
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
        return check_object_spec(value)

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
        return [check(v) for v in values]


# --------------------------------------------------------------------------- train / evaluate / runtime / output


def check_label_weights(value: dict[Any, Any]) -> dict[int, float]:
    """{integer label: finite weight >= 0}: no float or boolean labels, no boolean, negative or NaN weights."""
    weights = {}
    for label, weight in value.items():
        if isinstance(label, str) and re.fullmatch(r"-?\d+", label.strip()):
            label = int(label)  # JSON keys are strings: a resolved config.yaml writes {"1": 2.0}
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValueError(f"label {label!r} is not an integer class label")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"the weight of label {label} must be a finite number >= 0, got {weight!r}")
        weights[label] = float(weight)
    return weights


class SampleWeightByClass(Strict):
    """A per-class sample-weight rule: samples of these classes get these weights, others 1."""

    by_class: Annotated[dict[Any, Any], AfterValidator(check_label_weights)]


class TrainConfig(Strict):
    """Arguments of `model.fit`, plus where validation data comes from."""

    loop: Literal["fit", "custom"] = Field(
        "fit", description="fit: Keras's model.fit; custom: kerasrun's compiled GradientTape loop (same numbers)"
    )
    step: ImportPath | None = Field(
        None, description="custom loop only: module:function(model, x, y, sample_weight, training) -> {name: scalar}"
    )
    epochs: int = Field(1, ge=1, le=MAX_EPOCHS, strict=True)
    batch_size: int = Field(32, ge=1, le=MAX_BATCH, strict=True)
    steps_per_epoch: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True)
    validation_steps: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True)
    validation_split: Fraction | None = Field(None, description="hold out the last fraction of the training arrays (Keras semantics)")
    stratify: bool = Field(False, description="make the validation split stratified (seeded) instead of the last fraction")
    validation_from: Literal["last", "first"] = Field("last", description="hold out the last fraction (Keras) or the first")
    validation_data: Literal["test"] | None = Field(None, description="`test`: validate on the source's test split")
    shuffle: bool = True
    initial_epoch: int = Field(0, ge=0, le=MAX_EPOCHS, strict=True)
    class_weight: dict[int, float] | Literal["balanced"] | dict[str, dict[int, float] | Literal["balanced"]] | None = Field(
        None, description="{label: weight} or `balanced`; for several outputs {output_name: {label: weight} or balanced}"
    )
    sample_weight: SampleWeightByClass | None = Field(
        None, description="a per-class rule, e.g. {by_class: {5: 2.0}}; multiplies class_weight and the source's weights"
    )
    callbacks: list[CallbackEntry] = Field(
        default_factory=list, description="keras.callbacks classes or import paths; relative file arguments go into the run folder"
    )

    @field_validator("class_weight", mode="before")
    @classmethod
    def check_class_weight(cls, value: Any) -> Any:
        """`balanced`, or a mapping of integer labels to non-negative weights."""
        if value is None or value == "balanced":
            return value
        if isinstance(value, dict) and value and all(isinstance(v, (dict, str)) for v in value.values()):
            return {str(output): cls.check_class_weight(rule) for output, rule in value.items()}  # per output
        if isinstance(value, dict):
            return check_label_weights(value)
        raise ValueError(f"expected `balanced` or a mapping {{label: weight}}, got {value!r}")

    @model_validator(mode="after")
    def check_validation(self) -> TrainConfig:
        """One source of validation data at most; stratify needs a split."""
        if self.validation_split is not None and self.validation_data is not None:
            raise ValueError("set validation_split or validation_data, not both")
        if self.stratify and self.validation_split is None:
            raise ValueError("stratify needs validation_split")
        if self.step is not None and self.loop != "custom":
            raise ValueError("`step` needs `loop: custom`")
        if self.initial_epoch >= self.epochs:
            raise ValueError(f"initial_epoch ({self.initial_epoch}) must be below epochs ({self.epochs})")
        return self


class EvaluateConfig(Strict):
    """How the trained model is scored on the test split."""

    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH, strict=True, description="default: train.batch_size")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True)
    predict_samples: int = Field(0, ge=0, le=MAX_SAMPLES, strict=True, description="also save predictions for the first N test samples")


class RuntimeConfig(Strict):
    """Where and how training runs."""

    device: DeviceName | list[DeviceName] = Field("auto", description="auto | cpu | gpu | gpu:N, or a list such as [gpu:0, gpu:1]")
    strategy: Literal["none", "one_device", "mirrored", "multi_worker"] = Field(
        "none", description="tf.distribute strategy; batch_size is the global batch"
    )
    logical_cpus: int | None = Field(
        None, ge=1, le=64, strict=True, description="split the CPU into N logical devices (mirrored on CPU defaults to 2)"
    )
    deterministic: bool = Field(False, description="TensorFlow op determinism (slower, bit-reproducible)")

    @field_validator("device", mode="before")
    @classmethod
    def check_device(cls, value: Any) -> Any:
        """One clear message for a bad device, instead of one per accepted form."""
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and re.match(r"^(auto|cpu|gpu|gpu:\d+)$", v) for v in items):
            raise ValueError(f"expected auto, cpu, gpu or gpu:N, or a list such as [gpu:0, gpu:1]; got {value!r}")
        return value

    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32", description="Keras dtype policy; mixed keeps the last layer in float32"
    )


def checkpoints_off(value: Any) -> Any:
    """`checkpoint: off` (YAML reads off as false) and `checkpoint: false` mean no checkpoints."""
    return None if value is False else value


class CheckpointConfig(Strict):
    """How often the run folder gets a checkpoint to resume from."""

    every: int = Field(
        1, ge=1, le=MAX_EPOCHS, strict=True, description="epochs between checkpoints; the last epoch and an interruption always write one"
    )
    keep: int = Field(1, ge=1, le=1000, strict=True, description="how many of the newest checkpoints to keep")


class TensorBoardConfig(Strict):
    """Options of the keras.callbacks.TensorBoard that writes `<run>/tensorboard/` (the log folder is fixed)."""

    update_freq: Literal["epoch", "batch"] | Annotated[int, Field(ge=1, strict=True)] = Field(
        "epoch", description="`epoch`, `batch`, or every N batches: how often scalars are written"
    )
    histogram_freq: int = Field(0, ge=0, strict=True, description="epochs between weight histograms (0: none)")
    write_graph: bool = Field(True, description="write the model graph")
    write_images: bool = Field(False, description="write the weights as images")
    write_steps_per_second: bool = Field(False, description="log training steps per second")
    profile_batch: (
        Annotated[int, Field(ge=0, strict=True)]
        | Annotated[list[Annotated[int, Field(ge=0, strict=True)]], Field(min_length=2, max_length=2)]
    ) = Field(0, description="profile this batch, or [first, last] batches (0: no profiling)")


def tensorboard_flag(value: Any) -> Any:
    """`tensorboard: true` means the defaults; false (or off) means none."""
    if value is True:
        return {}
    return None if value is False else value


class MlflowConfig(Strict):
    """An MLflow tracking store to log the run to (params, per-epoch metrics, status, files, model)."""

    tracking_uri: str | None = Field(
        None,
        description="e.g. sqlite:///mlflow.db, file:mlruns, http://host:5000; a relative path is relative to the config file "
        "(default: MLFLOW_TRACKING_URI, else MLflow's own default)",
    )
    experiment: str | None = Field(None, min_length=1, description="MLflow experiment, created if missing (default: the run name)")
    run_name: str | None = Field(None, min_length=1, description="MLflow run name (default: the run folder's name)")
    log_model: bool = Field(True, description="upload model.keras as an artifact")


class OutputConfig(Strict):
    """Where the run folder goes and what it keeps."""

    runs_dir: str = "runs"
    save_model: bool = True
    curves: bool = Field(
        True, description="draw curves.png (learning curves, with matplotlib: the `plot` extra) into the run folder at the end of training"
    )
    checkpoint: Annotated[CheckpointConfig | None, BeforeValidator(checkpoints_off)] = Field(
        default_factory=CheckpointConfig, description="`off` (or false): no checkpoints, so the run can't be resumed"
    )
    tensorboard: Annotated[TensorBoardConfig | None, BeforeValidator(tensorboard_flag)] = Field(
        None, description="true, or TensorBoard options: event files in <run>/tensorboard/ (needs the `tensorboard` package)"
    )
    mlflow: MlflowConfig | None = Field(
        None, description="log the run to MLflow: {tracking_uri, experiment, run_name} (needs the `mlflow-skinny` package)"
    )


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
        """A path from the config, relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self._base_dir / path)


# --------------------------------------------------------------------------- loading


def apply_overrides(data: dict[str, Any], overrides: list[str], source: SourceMap, values: dict[str, Any] | None = None) -> None:
    """Apply `dotted.key=value` overrides (values parsed as YAML), then `values` (taken as they are)."""
    for item in overrides:
        dotted, _, raw = item.partition("=")
        append = dotted.endswith("+")  # key+=[a, b] appends to the list at key
        dotted = dotted.removesuffix("+")
        if "=" not in item or not dotted.strip(".[] "):
            raise ConfigError(Problem(key=item, message="expected --set dotted.key=value", file="--set"))
        try:
            value, _, duplicates = load_yaml_value(raw, "--set")
        except ConfigError as exc:
            raise ConfigError(
                [Problem(key=dotted, message=f"value is not valid YAML: {p.message}", file="--set") for p in exc.problems]
            ) from None
        if duplicates:  # duplicate keys, or numbers in a surprising base, inside the value
            raise ConfigError(
                [Problem(key=".".join(x for x in (dotted, p.key) if x), message=p.message, file="--set", hint=p.hint) for p in duplicates]
            )
        set_dotted(data, dotted, value, source, append)
    for dotted, value in (values or {}).items():
        set_dotted(data, dotted, value, source)


def set_dotted(data: dict[str, Any], dotted: str, value: Any, source: SourceMap, append: bool = False) -> None:
    """Set `a.b[2].c` in the raw config (or append to the list there), creating mappings on the way; remember it came from the command line."""
    parts: list[Any] = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    target: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(target, list) and isinstance(part, int) and part < len(target):
            target = target[part]
        elif isinstance(target, dict):
            if isinstance(target.get(part), str) and tuple(parts[: i + 1]) == ("model", "init_from"):
                target[part] = {"path": target[part]}  # the shorthand `init_from: PATH`, spelled out to set a key in it
            target = target.setdefault(part, {})
        else:
            raise ConfigError(Problem(key=format_key(tuple(parts[: i + 1])), message="cannot set a key inside a non-mapping", file="--set"))
    if append:
        current = target.get(parts[-1], []) if isinstance(target, dict) else None
        if not isinstance(current, list):
            raise ConfigError(Problem(key=dotted, message="+= appends to a list; this key holds no list", file="--set"))
        target[parts[-1]] = current + (value if isinstance(value, list) else [value])
        source.overrides.add(tuple(str(p) for p in (*parts, len(current))))  # the new items came from the command line
        return
    if (isinstance(target, list) and isinstance(parts[-1], int) and parts[-1] < len(target)) or isinstance(target, dict):
        target[parts[-1]] = value
    else:
        raise ConfigError(Problem(key=dotted, message="cannot set a key inside a non-mapping", file="--set"))
    source.overrides.add(tuple(str(p) for p in parts))


def load_config(path: str | Path, overrides: list[str] | None = None, values: dict[str, Any] | None = None) -> Config:
    """Read, override and validate a config file; raise ConfigError listing every problem.

    `values` are set as given, not parsed as YAML: `--name 2024` is the name "2024", not a number.
    """
    data, source = read_config_file(Path(path))  # with the configs it extends merged in and ${VAR}s substituted
    make_config_folder_importable(str(Path(path).resolve().parent))
    return validate_config(data, source, overrides or [], Path(path).resolve().parent, values)


def load_config_text(text: str, path: Path, overrides: list[str] | None = None) -> Config:
    """Validate config text already read (a run folder's, whose bytes were verified), located as `path`."""
    data, source = parse_yaml(text, str(path))
    return validate_config(data, source, overrides or [], Path(path).resolve().parent)


def validate_config(
    data: dict[str, Any], source: SourceMap, overrides: list[str], base_dir: Path, values: dict[str, Any] | None = None
) -> Config:
    """Apply overrides and validate the raw mapping against the schema, then the rules that span sections."""
    apply_overrides(data, overrides, source, values)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, data, source, Config)) from None
    config._source = source
    config._base_dir = base_dir
    collector = Collector()
    for problem in check_across_sections(config):
        collector.add(problem)
    collector.raise_if_any()
    return config


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
    return problems


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


def config_to_yaml(config: Config, data_dir: Path | None = None) -> str:
    """The fully resolved config as YAML (defaults filled in, overrides applied, paths absolute)."""
    return yaml.safe_dump(resolved_dict(config, data_dir), sort_keys=False, allow_unicode=True)


def shrink_for_smoke(config: Config) -> Config:
    """The same experiment cut to one epoch of at most 2 train/validation/test batches, on the CPU, not logged to MLflow."""
    steps = min(config.train.steps_per_epoch or 2, 2)
    return config.model_copy(
        update={
            "train": config.train.model_copy(update={"epochs": 1, "initial_epoch": 0, "steps_per_epoch": steps, "validation_steps": 2}),
            "evaluate": config.evaluate.model_copy(update={"steps": 2}),
            "runtime": config.runtime.model_copy(update={"device": "cpu"}),
            "output": config.output.model_copy(update={"mlflow": None}),  # a throwaway check leaves no run in the MLflow store
        }
    )


def resolved_dict(config: Config, data_dir: Path | None = None) -> dict[str, Any]:
    """The config as plain data with file paths made absolute, so a run folder stands on its own."""
    out = config.model_dump(mode="json")
    data = out["data"]
    for key in ("path", "test_path", "validation_path", "dir"):
        if data.get(key):
            data[key] = str(config.resolve_path(data[key]))
    for key in ("files", "validation_files", "test_files"):  # globs of shards
        if isinstance(data.get(key), str):
            data[key] = str(config.resolve_path(data[key]))
        elif isinstance(data.get(key), list):
            data[key] = [str(config.resolve_path(pattern)) for pattern in data[key]]
    if data.get("source") == "keras" and data_dir is not None:
        data["dir"] = str(Path(data_dir).resolve())
    init_from = out["model"].get("init_from")
    if init_from and init_from.get("path"):
        init_from["path"] = str(config.resolve_path(init_from["path"]))
    mlflow = out["output"].get("mlflow")
    if mlflow and mlflow.get("tracking_uri"):
        mlflow["tracking_uri"] = absolute_tracking_uri(config, mlflow["tracking_uri"])
    return out


LOCAL_URI = re.compile(r"^(?P<scheme>file:(?://)?|sqlite:///)(?P<path>.*)$")


def absolute_tracking_uri(config: Config, uri: str) -> str:
    """An MLflow tracking URI whose local path (a bare path, `file:`, `sqlite:///`) is made absolute against the config's folder.

    Remote URIs (http, databricks, ...) are left as they are; `file:///abs` and `sqlite:////abs` already are absolute.
    """
    if uri == "databricks" or uri.startswith("databricks"):
        return uri
    if not re.match(r"^[A-Za-z][\w+.-]*:", uri):
        return config.resolve_path(uri).resolve().as_uri()  # a bare path: a file store
    match = LOCAL_URI.match(uri)
    if match is None or match["path"].startswith("/") or (match["scheme"] == "file://" and match["path"]):
        return uri  # remote, absolute, or file://host/... (not a relative path)
    path = str(config.resolve_path(match["path"]).resolve())
    return f"sqlite:///{path}" if match["scheme"] == "sqlite:///" else Path(path).as_uri()
