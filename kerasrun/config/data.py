"""The `data` section: one schema class per `source`, discriminated by `source`, and the preprocessing steps."""

from __future__ import annotations

import codecs
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kerasrun.config.fields import MAX_CLASSES, MAX_SAMPLES, Dimension, Finite, Fraction, ImportPath, LayerName, Real, Size, Strict

# The dtypes features can be cast to: numbers a model input takes (complex numbers and Python objects are no input).
CASTS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "bool")


def suggest_name(name: str, choices: Any) -> str:
    """`did you mean ...?` for a misspelled name, or the choices."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else f"one of: {', '.join(choices)}"


class PreprocessStep(Strict):
    """One preprocessing step; exactly one key is set."""

    reshape: list[Dimension] | None = Field(None, description="new per-sample shape of the features, -1 allowed")
    scale: Real | None = Field(None, description="divide the features by this number", gt=0, allow_inf_nan=False)
    cast: str | None = Field(None, description=f"cast the features to this dtype: {', '.join(CASTS)}")
    one_hot: int | None = Field(
        None, description="one-hot encode the integer targets into this many classes", ge=2, le=MAX_CLASSES, strict=True
    )

    @field_validator("cast")
    @classmethod
    def check_cast(cls, value: str | None) -> str | None:
        """A dtype a model input can take."""
        if value is not None and value not in CASTS:
            raise ValueError(f"cannot cast features to `{value}`: {suggest_name(value, CASTS)}")
        return value

    @model_validator(mode="after")
    def check_one_key(self) -> PreprocessStep:
        """Each list entry must be a single step."""
        if sum(getattr(self, name) is not None for name in type(self).model_fields) != 1:
            raise ValueError("each preprocess entry must set exactly one of reshape, scale, cast, one_hot")
        return self


# Keys of the sources read while training (streamed CSV, streamed image folders, TFRecord).
ShuffleBuffer = Annotated[int, Field(ge=1, le=1 << 26, strict=True, description="streamed: rows the training shuffle holds at once")]
StreamCache = Annotated[
    Literal["none", "file", "keep"],
    Field(
        description="streamed: `file` writes the decoded rows to the run folder's cache/ on the first pass and reads them from there, "
        "removing it when the run completes; `keep` keeps it"
    ),
]


class DataCommon(Strict):
    """Keys shared by every data source."""

    # The fields naming files or folders (or globs of them), relative to the config file. The one list of them:
    # compose.py makes a base config's absolute under `extends`, resolved.py makes them absolute in a run folder's config.
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ()

    preprocess: list[PreprocessStep] = Field(
        default_factory=list, description="steps applied to features (and one_hot to targets), in order"
    )
    allow_nonfinite: bool = Field(False, description="accept NaN/inf in the input arrays instead of refusing them")


class KerasData(DataCommon):
    """A `keras.datasets` dataset, read offline from a data directory when it is there."""

    PATH_FIELDS = ("dir",)

    source: Literal["keras"]
    name: str = Field(description="keras.datasets name, e.g. mnist, fashion_mnist, cifar10")
    dir: str | None = Field(None, description="data directory; default $KERASRUN_DATA_DIR")


class NpzData(DataCommon):
    """Arrays from a NumPy .npz file."""

    PATH_FIELDS = ("path",)

    source: Literal["npz"]
    path: str
    x: str | dict[str, str] = Field("x_train", description="array key; for several inputs {input name: key}")
    y: str | dict[str, str] = Field("y_train", description="array key; for several outputs {output name: key}")
    x_val: str | dict[str, str] | None = Field("x_val", description="validation features, used when the file has them")
    y_val: str | dict[str, str] | None = Field("y_val", description="validation targets, used when the file has them")
    x_test: str | dict[str, str] | None = "x_test"
    y_test: str | dict[str, str] | None = "y_test"
    sample_weight: str | None = Field(None, description="key of per-sample training weights")


def csv_targets(target: Any) -> list[str]:
    """The target columns of a `target` value (one column, or {output: column})."""
    return list(target.values()) if isinstance(target, dict) else [target] if isinstance(target, str) else []


def validation_key(data: Any) -> str | None:
    """The key of a data section that names validation data of the source's own (`validation_path`, `validation_files`), when set."""
    return next((key for key in ("validation_path", "validation_files") if getattr(data, key, None) is not None), None)


def csv_columns(features: Any) -> list[str]:
    """The feature columns of a `features` value (a list, or {input: columns})."""
    groups = features.values() if isinstance(features, dict) else [features or []]
    return [column for columns in groups for column in columns]


class CsvData(DataCommon):
    """A table in a CSV file: feature columns and one target column."""

    PATH_FIELDS = ("path", "test_path", "validation_path")

    source: Literal["csv"]
    path: str
    target: str | dict[str, str] = Field(description="target column; {output name: column} for several outputs")
    features: list[str] | dict[str, list[str]] | None = Field(
        None,
        description="feature columns of the one input (default: every other column); {input name: columns} for several inputs; "
        "an input's columns share one column type (see column_types)",
    )
    test_path: str | None = None
    test_fraction: Fraction | None = None
    validation_path: str | None = Field(None, description="a CSV file of validation rows (instead of train.validation_split)")
    sample_weight: str | None = Field(None, description="a column of per-row training weights (not a feature)")
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = Field("utf-8", description="text encoding of the files, e.g. latin-1")
    stream: bool = Field(False, description="read with tf.data while training instead of loading the file into memory")
    column_types: dict[str, Literal["float32", "int64", "string"]] = Field(
        default_factory=dict,
        description="a target or feature column's type: float32 (numbers), int64 (integers as written: 3, not 3.0) or string (text, "
        "e.g. for a StringLookup); an undeclared feature is float32, an undeclared target inferred from the rows "
        "(the first 1,000 when streamed); an input's columns share one type",
    )
    shuffle_buffer: ShuffleBuffer = 10_000
    cache: StreamCache = "none"

    # Field validators see the keys declared above them (info.data): each problem is located at its own key.
    @field_validator("features")
    @classmethod
    def check_features(cls, value: Any, info: ValidationInfo) -> Any:
        """A target column is never a feature."""
        leaked = [column for column in csv_targets(info.data.get("target")) if column in csv_columns(value)]
        if leaked:
            raise ValueError(f"`{leaked[0]}` is the target and also a feature: the model would be given the answer")
        return value

    @field_validator("test_fraction")
    @classmethod
    def check_test_keys(cls, value: Any, info: ValidationInfo) -> Any:
        """One way to make a test split."""
        if value is not None and info.data.get("test_path") is not None:
            raise ValueError("give test_path or test_fraction, not both")
        return value

    @field_validator("sample_weight")
    @classmethod
    def check_weight_column(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The weight column is neither the target nor a feature."""
        if value is not None and value in csv_targets(info.data.get("target")):
            raise ValueError(f"`{value}` is the target column: a column holds the targets or the weights, not both")
        if value is not None and value in csv_columns(info.data.get("features")):
            raise ValueError(f"`{value}` is also listed under features: the weights are never a feature")
        return value

    @field_validator("encoding")
    @classmethod
    def check_encoding(cls, value: str) -> str:
        """A text encoding Python knows."""
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding `{value}`: e.g. utf-8, latin-1, cp1252, utf-16") from None
        return value

    @field_validator("stream")
    @classmethod
    def check_stream_encoding(cls, value: bool, info: ValidationInfo) -> bool:
        """The streamed reader splits lines on the byte 0x0A: UTF-16 and UTF-32 text can't be streamed."""
        encoding = info.data.get("encoding")
        if value and isinstance(encoding, str) and "a,\n".encode(encoding) != b"a,\n":
            raise ValueError(f"the streamed reader splits lines as bytes: it needs an ASCII-compatible encoding, not {encoding}")
        return value


class SklearnData(DataCommon):
    """A real dataset bundled with scikit-learn (no network needed)."""

    source: Literal["sklearn"]
    name: Literal["digits", "iris", "breast_cancer", "wine", "diabetes"] = Field(
        description="classification: digits, iris, breast_cancer, wine; regression: diabetes"
    )
    test_fraction: Fraction = 0.2
    stratify: bool = True


Classes = Annotated[int, Field(ge=2, le=MAX_CLASSES, strict=True, description="at least 2: one class is no classification")]


class SyntheticData(DataCommon):
    """Seeded generated data: Gaussian `blobs` per class, or `random` arrays."""

    source: Literal["synthetic"]
    generator: Literal["blobs", "random"]
    means: list[list[Finite]] | None = Field(None, description="blobs: one mean vector per class", max_length=MAX_CLASSES)
    cov: list[list[Finite]] | None = Field(None, description="blobs: shared covariance matrix")
    samples_per_class: int | None = Field(None, ge=1, le=MAX_SAMPLES, strict=True, description="blobs: points per class")
    x_shape: list[Size] | dict[str, list[Size]] | None = Field(
        None, description="random: per-sample feature shape; {input: shape} for several inputs"
    )
    classes: Classes | dict[str, Classes] | None = Field(
        None, description="random: integer labels in [0, classes); {output: classes} for class outputs"
    )
    y_shape: list[Size] | dict[str, list[Size]] | None = Field(
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

    @field_validator("cov")
    @classmethod
    def check_cov(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        """A covariance matrix: square, symmetric, positive semi-definite."""
        if value is not None and (problem := covariance_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("x_shape", "y_shape", "classes", mode="before")
    @classmethod
    def check_sizes(cls, value: Any, info: ValidationInfo) -> Any:
        """One message for a shape with a dimension below 1 or fewer than 2 classes (not one per accepted form)."""
        least = 2 if info.field_name == "classes" else 1
        numbers = list(value.values()) if isinstance(value, dict) else [value]
        if info.field_name != "classes":
            numbers = [n for shape in numbers if isinstance(shape, list) for n in shape]
        for number in numbers:
            if isinstance(number, int) and not isinstance(number, bool) and number < least:
                what = (
                    "at least 2 classes (labels are drawn from [0, classes))"
                    if least == 2
                    else "each dimension must be at least 1 (a synthetic shape infers none)"
                )
                raise ValueError(f"{what}, got {number}")
        return value


def covariance_problem(cov: list[list[float]]) -> str | None:
    """Why `cov` is no covariance matrix (not symmetric, or not positive semi-definite), or None.

    NumPy's multivariate_normal only warns and then draws from another distribution; its tolerance is kept here.
    """
    import numpy as np

    if any(len(row) != len(cov) for row in cov) or not cov:
        return f"cov must be a square matrix, got {len(cov)} rows of lengths {sorted({len(row) for row in cov})}"
    matrix = np.asarray(cov, dtype=np.float64)
    scale = max(1.0, float(np.abs(matrix).max()))
    if not np.allclose(matrix, matrix.T, rtol=1e-8, atol=1e-8 * scale):
        return "cov must be symmetric: a covariance matrix equals its transpose"
    lowest = float(np.linalg.eigvalsh(matrix).min())
    if lowest < -1e-8 * scale:
        return f"cov is not positive semi-definite (smallest eigenvalue {lowest:.3g}): no distribution has this covariance"
    return None


IMAGE_SIZE_MAX = 8192  # pixels per side; more is a typo (or a picture no model input takes whole)


class ClassFolders(DataCommon):
    """Keys of the sources read from one subfolder per class: labels follow the sorted subfolder names."""

    PATH_FIELDS = ("path", "test_path", "validation_path")

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
    encoding: str = Field(
        "utf-8",
        min_length=1,
        description="text encoding of the files (Keras reads raw bytes); others are re-encoded as UTF-8, e.g. latin-1, utf-16",
    )


class TfRecordFeature(Strict):
    """One feature of a tf.train.Example: its dtype and per-example shape (tf.io.FixedLenFeature)."""

    dtype: Literal["float32", "int64", "string"] = Field(description="the Example's list type: float32, int64 or string (bytes)")
    shape: list[Size] = Field(default_factory=list, description="per-example shape; [] for a scalar")


class TfRecordData(DataCommon):
    """tf.train.Example records in TFRecord files (several shards), read by tf.data while training."""

    PATH_FIELDS = ("files", "validation_files", "test_files")

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
