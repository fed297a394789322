"""`kerasrun export`: a completed run's model with its feature preprocessing inside, for serving.

`data.preprocess` runs in NumPy before the model during training and in `kerasrun predict`; an
exported model has to take what a client sends — raw features — so the feature steps (reshape,
scale, cast; one_hot only touches targets) become a `FeaturePreprocessing` layer in front of the
trained model. The wrapped model is exported by Keras's own `model.export` (SavedModel, LiteRT/TFLite
through TensorFlow's converter, ONNX through tf2onnx), written under a temporary name and renamed
into place, then checked against the Keras model on a few raw samples.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import keras, tf
from kerasrun.config.data import PreprocessStep
from kerasrun.config.schema import Config
from kerasrun.data import Split, Stream, preprocess
from kerasrun.data.sources import read_source
from kerasrun.data.sources.base import Where
from kerasrun.errors import ConfigError, KerasrunError, Problem, first_line
from kerasrun.optional import is_installed
from kerasrun.use.evaluate import load_run

FORMATS = ("saved_model", "tflite", "onnx")
# Keras's names for the formats, and the default artifact name inside <run>/export/.
KERAS_FORMAT = {"saved_model": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}
DEFAULT_NAME = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
CHECK_SAMPLES = 8  # raw training samples the artifact is checked on
TOLERANCE = 1e-5  # float32 kernels differ between runtimes by a few ulp, never by more


class ExportUnavailableError(ConfigError):
    """The format needs a package that is missing or does not work with this TensorFlow."""


class ExportMismatchError(KerasrunError):
    """The exported artifact does not give the Keras model's predictions (it was not written); exit 1."""


class ExportFailedError(KerasrunError):
    """Keras's exporter (or the converter under it) failed; nothing was written; exit 1."""


@dataclass
class ExportResult:
    """What `export_run` wrote and how it was checked."""

    path: Path
    format: str
    input_shape: tuple[int | None, ...]
    input_dtype: str
    steps: list[str]  # the preprocess steps inside the artifact, as `reshape [784]`
    max_abs_diff: float | None  # vs the Keras model on raw samples; None when there was nothing to check with


def feature_steps(config: Config) -> list[PreprocessStep]:
    """The preprocess steps that apply to features (one_hot applies to targets, which serving never sees)."""
    return [step for step in config.data.preprocess if step.one_hot is None]


def describe_step(step: PreprocessStep) -> str:
    """`reshape [28, 28, 1]`, `scale 255.0`, `cast float16`."""
    name, value = next((k, v) for k, v in step.model_dump().items() if v is not None)
    return f"{name} {value}"


class FeaturePreprocessing(keras.layers.Layer):
    """kerasrun's feature preprocessing (data.preprocess) as TensorFlow ops, with the dtypes NumPy gives.

    It mirrors kerasrun.data.preprocess: reshape keeps the batch dimension; scale divides in float
    (integers become float32 first, floats keep their precision); cast casts. No autocast: the raw
    dtype (e.g. uint8 pixels) must reach the steps as the client sent it.
    """

    def __init__(self, steps: list[dict[str, Any]], float32_math: bool = False, **kwargs: Any) -> None:
        super().__init__(autocast=False, **kwargs)
        self.steps = steps
        self.float32_math = float32_math  # TFLite's builtin ops have no float64 arithmetic

    def call(self, x: Any) -> Any:
        if self.float32_math and x.dtype == tf.float64:
            x = tf.cast(x, tf.float32)  # the model computes in float32 anyway; a difference of an ulp at most
        for step in self.steps:
            if step.get("reshape") is not None:
                x = tf.reshape(x, tf.concat([tf.shape(x)[:1], tf.constant(step["reshape"], tf.int32)], 0))
            elif step.get("scale") is not None:
                dtype = np.result_type(x.dtype.as_numpy_dtype, np.float32) if x.dtype.is_floating else np.dtype(np.float32)
                x = tf.cast(x, dtype) / tf.constant(step["scale"], dtype)
            elif step.get("cast") is not None:
                x = tf.cast(x, np.dtype(step["cast"]))
        return x

    def compute_output_spec(self, x: Any) -> Any:
        start = np.dtype(np.float32) if self.float32_math and np.dtype(x.dtype) == np.float64 else np.dtype(x.dtype)
        shape, dtype = after_steps(tuple(x.shape[1:]), start, self.steps)
        return keras.KerasTensor((x.shape[0], *shape), dtype=dtype.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "steps": self.steps, "float32_math": self.float32_math}


def after_steps(shape: tuple[int | None, ...], dtype: np.dtype, steps: list[dict[str, Any]]) -> tuple[tuple[int | None, ...], np.dtype]:
    """The per-sample shape and dtype after the steps, worked out in NumPy on one zero sample (the rules of data.preprocess)."""
    sample = np.zeros((1, *(1 if d is None else d for d in shape)), dtype=dtype)
    for step in steps:
        if step.get("reshape") is not None:
            sample = sample.reshape((1, *step["reshape"]))
        elif step.get("scale") is not None:
            sample = sample.astype(np.result_type(sample.dtype, np.float32) if sample.dtype.kind == "f" else np.float32)
        elif step.get("cast") is not None:
            sample = sample.astype(np.dtype(step["cast"]))
    return tuple(sample.shape[1:]), sample.dtype


def raw_features(config: Config, run_dir: Path) -> np.ndarray:
    """A few of the run's raw training features (before preprocess): they fix the shape and dtype a client sends.

    The source is read without the steps: a streamed CSV applies them row by row inside its dataset,
    so its raw rows come from the same reader with none (and only the first few are read).
    """
    data = read_source(config.data.model_copy(update={"preprocess": []}), Where.of(config))
    if isinstance(data.train, Stream):
        rows = [element[0] for element in data.train.make().take(CHECK_SAMPLES).as_numpy_iterator()]
        x: Any = np.stack(rows) if rows else None
    else:
        x = data.train.x if isinstance(data.train, Split) else None
    if not isinstance(x, np.ndarray):  # load_data refuses preprocess steps on anything else
        raise ConfigError(
            Problem(key="data.preprocess", message="the run's features are not one array; preprocess can't be exported", file=str(run_dir))
        )
    return x[:CHECK_SAMPLES]


def serving_model(model: Any, config: Config, raw: np.ndarray | None, float32_math: bool = False) -> Any:
    """The trained model with the feature steps in front of it (the model itself when there are none)."""
    steps = feature_steps(config)
    if not steps:
        return model
    assert raw is not None  # read by export_run whenever there are steps
    name = model.inputs[0].name if getattr(model, "inputs", None) else "features"
    inputs = keras.Input(shape=raw.shape[1:], dtype=raw.dtype.name, name=name)
    layer = FeaturePreprocessing([step.model_dump(exclude_none=True) for step in steps], float32_math, name="kerasrun_preprocess")
    outputs = model(layer(inputs), training=False)
    return keras.Model(inputs, outputs, name=f"{model.name}_serving")


def keras_predictions(model: Any, config: Config, raw: np.ndarray) -> np.ndarray:
    """What `kerasrun predict` gives for these raw features: NumPy preprocessing, then the Keras model."""
    steps = config.model_copy(update={"data": config.data.model_copy(update={"preprocess": feature_steps(config)})})
    features = preprocess(Split(raw, np.zeros(len(raw))), steps, "input").x
    return np.asarray(model.predict(features, verbose=0))


def check_format_available(fmt: str) -> None:
    """Exit 2 before anything is built when the format's converter is missing or broken here."""
    if fmt == "tflite" and not hasattr(getattr(tf, "lite", None), "TFLiteConverter"):
        raise ExportUnavailableError(
            Problem(
                key="--format", message=f"this TensorFlow ({tf.__version__}) has no tf.lite.TFLiteConverter", hint="export a SavedModel"
            )
        )
    if fmt != "onnx":
        return
    for package in ("tf2onnx", "onnx"):
        if not is_installed(package):
            raise ExportUnavailableError(
                Problem(key="--format", message=f"onnx needs the `{package}` package", hint="pip install 'kerasrun[onnx]'")
            )
    try:
        import tf2onnx  # noqa: F401  (its import fails when it does not fit this TensorFlow/NumPy/protobuf)
    except Exception as exc:
        raise ExportUnavailableError(
            Problem(
                key="--format",
                message=f"tf2onnx does not work with TensorFlow {tf.__version__} here: {type(exc).__name__}: {exc}",
                hint="export a SavedModel, or install a tf2onnx release that supports this TensorFlow",
            )
        ) from None


def default_output(run_dir: Path, fmt: str) -> Path:
    """<run>/export/saved_model, <run>/export/model.tflite or <run>/export/model.onnx."""
    return Path(run_dir) / "export" / DEFAULT_NAME[fmt]


def write_artifact(model: Any, fmt: str, path: Path, check: Callable[[Path], float | None]) -> float | None:
    """Export into a temporary sibling, check it, then rename it into place (an existing artifact is replaced whole); check's result."""
    if path.exists() and path.is_dir() != (fmt == "saved_model"):
        kind = "a folder" if path.is_dir() else "a file"
        raise ConfigError(
            Problem(
                key="--output", message=f"is {kind}; a {fmt} export is {'a folder' if fmt == 'saved_model' else 'a file'}", file=str(path)
            )
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as exc:
        raise ConfigError(
            Problem(
                key="--output", message=f"cannot write there: {exc.strerror}", file=str(path.parent), hint="choose another place with -o"
            )
        ) from None
    try:
        staged = scratch / DEFAULT_NAME[fmt]  # with the suffix Keras would otherwise append
        try:
            with warnings.catch_warnings():  # tf2onnx's NumPy 2 shim warns on import; nothing the user can act on
                warnings.simplefilter("ignore", FutureWarning)
                model.export(str(staged), format=KERAS_FORMAT[fmt], verbose=False)
        except Exception as exc:  # a converter's own errors (TFLite, tf2onnx): nothing was written
            raise ExportFailedError(f"Keras could not export the model as {fmt}: {type(exc).__name__}: {first_line(exc)}") from exc
        diff = check(staged)  # a wrong artifact never takes the place of a good one
        if path.is_dir() and not path.is_symlink():
            old = scratch / ".replaced"
            os.replace(path, old)  # a directory can't be replaced in one rename: move the old one aside first
        os.replace(staged, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return diff


def run_artifact(path: Path, fmt: str, raw: np.ndarray) -> np.ndarray:
    """The artifact's predictions for `raw`, through the runtime a server would use."""
    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(path))
        return np.asarray(loaded.serve(tf.constant(raw)))
    if fmt == "tflite":
        return run_tflite(path, raw)
    import onnxruntime  # verified only when installed (see check_artifact)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: raw})[0])


def run_tflite(path: Path, raw: np.ndarray) -> np.ndarray:
    """Predictions from TensorFlow's TFLite interpreter, resized to the batch."""
    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to ai_edge_litert
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    entry, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(entry["index"], raw.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], raw)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(out["index"]))


def check_artifact(path: Path, fmt: str, model: Any, config: Config, raw: np.ndarray | None) -> float | None:
    """Largest difference between the artifact and `kerasrun predict` on raw samples; raise when they disagree."""
    if raw is None or (fmt == "onnx" and not is_installed("onnxruntime")):
        return None
    sample = np.ascontiguousarray(raw[:CHECK_SAMPLES])
    expected = keras_predictions(model, config, sample)
    try:
        got = run_artifact(path, fmt, sample)
    except Exception as exc:  # the runtime can't run what the converter wrote (e.g. TFLite Flex ops)
        raise ExportMismatchError(f"the {fmt} artifact does not run in its runtime: {type(exc).__name__}: {first_line(exc)}") from exc
    if got.shape != expected.shape:
        raise ExportMismatchError(f"the {fmt} artifact gives predictions of shape {got.shape}, the model {expected.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))) if got.size else 0.0
    if not np.allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE):
        raise ExportMismatchError(
            f"the {fmt} artifact does not give the model's predictions on raw samples (max difference {diff:.3g}); nothing written"
        )
    return diff


def export_run(run_dir: Path, fmt: str = "saved_model", output: Path | None = None, trust: bool = False) -> ExportResult:
    """Export a completed, trusted run's model with its feature preprocessing, and check it against `kerasrun predict`."""
    if fmt not in FORMATS:
        raise ConfigError(Problem(key="--format", message=f"unknown format `{fmt}`", hint=f"one of {', '.join(FORMATS)}"))
    check_format_available(fmt)
    config, model = load_run(run_dir, trust)  # refuses untrusted and unfinished runs; safe_mode
    if len(getattr(model, "inputs", None) or [None]) > 1 and feature_steps(config):
        raise ConfigError(Problem(key="data.preprocess", message="preprocess steps apply to one input only", file=str(run_dir)))
    raw = raw_features(config, run_dir) if feature_steps(config) else None
    wrapped = serving_model(model, config, raw, float32_math=fmt == "tflite")
    spec = wrapped.inputs[0] if getattr(wrapped, "inputs", None) else None
    if raw is None and spec is not None and all(d is not None for d in spec.shape[1:]):
        # No steps, so raw features are the model's own input: check with a few seeded ones of its shape.
        raw = np.random.default_rng(config.seed).standard_normal((CHECK_SAMPLES, *spec.shape[1:])).astype(spec.dtype)
    if raw is not None:
        wrapped(raw[:1])  # Keras's ONNX export refuses a model that was never called
    path = Path(output) if output is not None else default_output(run_dir, fmt)
    single = len(getattr(model, "inputs", None) or [None]) == 1
    diff = write_artifact(wrapped, fmt, path, lambda staged: check_artifact(staged, fmt, model, config, raw) if single else None)
    return ExportResult(
        path=path,
        format=fmt,
        input_shape=tuple(spec.shape) if spec is not None else (),
        input_dtype=str(spec.dtype) if spec is not None else "",
        steps=[describe_step(step) for step in feature_steps(config)],
        max_abs_diff=diff,
    )
