"""The `train`, `evaluate`, `runtime` and `output` sections."""

from __future__ import annotations

import math
import re
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from kerasrun.config.fields import MAX_BATCH, MAX_EPOCHS, MAX_SAMPLES, MAX_STEPS, SPEC_JSON_SCHEMA, DeviceName, Fraction, ImportPath, Strict
from kerasrun.config.spec import check_object_spec, split_spec

# Callback arguments that name files; relative ones are placed inside the run folder.
CALLBACK_PATH_KEYS = ("filepath", "filename", "log_dir", "backup_dir")


def check_callback_entry(spec: Any) -> Any:
    """A callback spec whose relative file arguments stay inside the run folder; no BackupAndRestore."""
    name, kwargs, _ = split_spec(check_object_spec(spec))
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


CallbackEntry = Annotated[Any, AfterValidator(check_callback_entry), Field(json_schema_extra=SPEC_JSON_SCHEMA)]


def check_label_weights(value: dict[Any, Any], names: bool = False) -> dict[Any, float]:
    """{integer label: finite weight >= 0}: no float or boolean labels, no boolean, negative or NaN weights.

    With `names`, a label may also be a class name (`cat`): the source's class names number it when the data loads.
    """
    weights: dict[Any, float] = {}
    for label, weight in value.items():
        if isinstance(label, str) and re.fullmatch(r"-?\d+", label.strip()):
            label = int(label)  # JSON keys are strings: a resolved config.yaml writes {"1": 2.0}
        if isinstance(label, bool) or not isinstance(label, (int, str) if names else int):
            raise ValueError(f"label {label!r} is not an integer class label" + (" or a class name" if names else ""))
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"the weight of label {label} must be a finite number >= 0, got {weight!r}")
        weights[label] = float(weight)
    return weights


def is_per_output(class_weight: Any) -> TypeGuard[dict[str, dict[int, float] | Literal["balanced"]]]:
    """True for {output_name: rule} class weights (a rule is a mapping or `balanced`; {class name: weight} is one output's)."""
    return isinstance(class_weight, dict) and bool(class_weight) and all(isinstance(v, (dict, str)) for v in class_weight.values())


class SampleWeightByClass(Strict):
    """A per-class sample-weight rule: samples of these classes get these weights, others 1."""

    by_class: Annotated[dict[Any, Any], AfterValidator(check_label_weights)]


class TrainConfig(Strict):
    """Arguments of `model.fit`, plus where validation data comes from."""

    loop: Literal["auto", "fit", "custom"] = Field(
        "auto",
        description="auto: the faster loop that gives the same numbers (custom unless the model needs fit); "
        "fit: Keras's model.fit; custom: kerasrun's compiled GradientTape loop (same numbers)",
    )
    step: ImportPath | None = Field(
        None, description="custom loop only: module:function(model, x, y, sample_weight, training) -> {name: scalar}"
    )
    epochs: int = Field(1, ge=1, le=MAX_EPOCHS, strict=True)
    batch_size: int = Field(32, ge=1, le=MAX_BATCH, strict=True)
    steps_per_epoch: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True)
    validation_steps: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True)
    validation_split: Fraction | None = Field(
        None, description="hold out the last fraction of the training arrays (Keras semantics; 0 or null: none)"
    )
    stratify: bool = Field(False, description="make the validation split stratified (seeded) instead of the last fraction")
    validation_from: Literal["last", "first"] = Field("last", description="hold out the last fraction (Keras) or the first")
    validation_data: Literal["test"] | None = Field(None, description="`test`: validate on the source's test split")
    shuffle: bool = True
    initial_epoch: int = Field(0, ge=0, le=MAX_EPOCHS, strict=True)
    class_weight: dict[int | str, float] | Literal["balanced"] | dict[str, dict[int, float] | Literal["balanced"]] | None = Field(
        None,
        description="{label: weight} (a label or a class name) or `balanced`; for several outputs {output_name: {label: weight} or balanced}",
    )
    sample_weight: SampleWeightByClass | None = Field(
        None, description="a per-class rule, e.g. {by_class: {5: 2.0}}; multiplies class_weight and the source's weights"
    )
    callbacks: list[CallbackEntry] = Field(
        default_factory=list, description="keras.callbacks classes or import paths; relative file arguments go into the run folder"
    )

    @field_validator("validation_split", mode="before")
    @classmethod
    def read_no_split(cls, value: Any) -> Any:
        """0 holds nothing out, as in Keras's fit (validation_split=0.0): no split, like null."""
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0 else value

    @field_validator("class_weight", mode="before")
    @classmethod
    def check_class_weight(cls, value: Any) -> Any:
        """`balanced`, or a mapping of integer labels to non-negative weights."""
        if value is None or value == "balanced":
            return value
        if isinstance(value, dict) and value and all(isinstance(v, (dict, str)) for v in value.values()):
            return {
                str(output): check_label_weights(rule) if isinstance(rule, dict) else cls.check_class_weight(rule)
                for output, rule in value.items()
            }
        if isinstance(value, dict):
            return check_label_weights(value, names=True)  # one output: its classes may be named
        raise ValueError(f"expected `balanced` or a mapping {{label: weight}}, got {value!r}")

    @model_validator(mode="after")
    def check_validation(self) -> TrainConfig:
        """One source of validation data at most; stratify needs a split."""
        if self.validation_split is not None and self.validation_data is not None:
            raise ValueError("set validation_split or validation_data, not both")
        if self.stratify and self.validation_split is None:
            raise ValueError("stratify needs validation_split")
        if self.step is not None and self.loop == "fit":
            raise ValueError("`step` needs `loop: custom` (or `auto`, which then picks it)")
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
    curves: bool = Field(True, description="draw curves.png (learning curves, with matplotlib) into the run folder at the end of training")
    checkpoint: Annotated[CheckpointConfig | None, BeforeValidator(checkpoints_off)] = Field(
        default_factory=CheckpointConfig, description="`off` (or false): no checkpoints, so the run can't be resumed"
    )
    tensorboard: Annotated[TensorBoardConfig | None, BeforeValidator(tensorboard_flag)] = Field(
        None, description="true, or TensorBoard options: event files in <run>/tensorboard/ (needs the `tensorboard` package)"
    )
    mlflow: MlflowConfig | None = Field(
        None, description="log the run to MLflow: {tracking_uri, experiment, run_name} (needs the `mlflow-skinny` package)"
    )
