"""`kerasrun export`: a completed run's model with its feature preprocessing inside, for serving.

`data.preprocess` runs in NumPy before the model during training and in `kerasrun predict`; an
exported model has to take what a client sends — raw features — so the feature steps (reshape,
scale, cast; one_hot only touches targets) become a `FeaturePreprocessing` layer in front of the
trained model. The wrapped model is exported by Keras's own `model.export` (SavedModel, LiteRT/TFLite
through TensorFlow's converter, ONNX through tf2onnx), written under a temporary name and renamed
into place, then checked against the Keras model on a few raw samples.

Models with string inputs, several named inputs or several outputs export too. A format that cannot
hold a model is exit 2 naming the ops, as the converter itself reports them (kerasrun.use.artifacts).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import keras, tf
from kerasrun.config.data import PreprocessStep
from kerasrun.config.schema import Config
from kerasrun.config.urls import url_of
from kerasrun.data import Split, Stream, preprocess
from kerasrun.data.sources import read_source
from kerasrun.data.sources.base import Where
from kerasrun.errors import ConfigError, Problem, first_line
from kerasrun.optional import is_installed
from kerasrun.rundir.remote import publish_artifact, remove_at_exit, unsupported
from kerasrun.use.artifacts import (
    DEFAULT_NAME,
    FORMATS,
    TOLERANCE,
    ExportMismatchError,
    check_format_available,
    check_local_target,
    check_remote_target,
    default_output,
    run_artifact,
    write_artifact,
)
from kerasrun.use.evaluate import load_run
from kerasrun.use.predict import Features, as_outputs, model_feed

CHECK_SAMPLES = 8  # raw training samples the artifact is checked on


@dataclass
class Tensor:
    """One input or output of the artifact: its name, shape (None: any size) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def shape_text(self) -> str:
        """`(None, 8, 8)`; a string input's `(None,)`."""
        dims = ["None" if d is None else str(d) for d in self.shape]
        return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


@dataclass
class ExportResult:
    """What `export_run` wrote and how it was checked."""

    path: Path | str  # a URL when exported to gs://…
    format: str
    inputs: list[Tensor]  # in the model's order; a SavedModel's signature and TFLite/ONNX take them by these names
    outputs: list[Tensor]  # in the order every format gives them (SavedModel and TFLite name them output_0, output_1, ...)
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


def source_features(config: Config) -> Any:
    """The first few raw training features the run's source gives (before preprocess): an array, {name: array}, or None.

    The source is read without the steps: a streamed CSV applies them row by row inside its dataset,
    so its raw rows come from the same reader with none (and only the first few are read).
    """
    with contextlib.redirect_stdout(sys.stderr):  # Keras's directory readers print "Found N files" on stdout
        data = read_source(config.data.model_copy(update={"preprocess": []}), Where.of(config))
    if isinstance(data.train, Stream):
        rows = [element[0] for element in data.train.make().take(CHECK_SAMPLES).as_numpy_iterator()]
        if not rows:
            return None
        return {k: np.stack([row[k] for row in rows]) for k in rows[0]} if isinstance(rows[0], dict) else np.stack(rows)
    x = data.train.x if isinstance(data.train, Split) else None
    if isinstance(x, dict):
        return {k: np.asarray(v)[:CHECK_SAMPLES] for k, v in x.items()}
    return x[:CHECK_SAMPLES] if isinstance(x, np.ndarray) else None


def raw_features(config: Config, run_dir: Path) -> np.ndarray:
    """A few of the run's raw training features (before preprocess): they fix the shape and dtype a client sends."""
    x = source_features(config)
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


def check_samples(model: Any, config: Config, run_dir: Path) -> Features | None:
    """Raw samples to check the artifact with, as a client would send them.

    With feature steps: the source's raw features (they fix the artifact's input). Without, float
    inputs of fixed shape get seeded random samples (no data needed); text, integer and free-length
    inputs take the source's own training samples, as random ones would say nothing (or not fit).
    """
    if feature_steps(config):
        return raw_features(config, run_dir)
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs:
        return None  # a subclassed model declares no inputs
    if all(str(t.dtype) in ("float16", "float32", "float64") and None not in t.shape[1:] for t in inputs):
        rng = np.random.default_rng(config.seed)
        samples = {t.name: rng.standard_normal((CHECK_SAMPLES, *t.shape[1:])).astype(str(t.dtype)) for t in inputs}
        return samples if len(inputs) > 1 else samples[inputs[0].name]
    x = source_features(config)
    if len(inputs) > 1:
        return x if isinstance(x, dict) and all(t.name in x for t in inputs) else None
    return next(iter(x.values())) if isinstance(x, dict) and len(x) == 1 else x


def sliced(raw: Features, stop: int) -> Features:
    """The first `stop` samples of every array, contiguous (runtimes copy nothing else)."""
    if isinstance(raw, dict):
        return {name: np.ascontiguousarray(array[:stop]) for name, array in raw.items()}
    return np.ascontiguousarray(raw[:stop])


def keras_predictions(model: Any, config: Config, raw: Features) -> list[np.ndarray]:
    """What `kerasrun predict` gives for these raw features: NumPy preprocessing, then the Keras model; one array per output."""
    features: Features = raw
    if isinstance(raw, np.ndarray) and feature_steps(config):
        steps = config.model_copy(update={"data": config.data.model_copy(update={"preprocess": feature_steps(config)})})
        features = np.asarray(preprocess(Split(raw, np.zeros(len(raw))), steps, "input").x)
    return as_outputs(model.predict(model_feed(features), verbose=0), output_names(model))


def output_names(model: Any) -> list[str]:
    """The model's output names, in its order."""
    return list(getattr(model, "output_names", None) or [])


def check_artifact(path: Path, fmt: str, model: Any, config: Config, raw: Features | None) -> float | None:
    """Largest difference between the artifact and `kerasrun predict` on raw samples, over every output; raise when they disagree."""
    if raw is None or (fmt == "onnx" and not is_installed("onnxruntime")):
        return None
    sample = sliced(raw, CHECK_SAMPLES)
    names = output_names(model)
    expected = keras_predictions(model, config, sample)
    try:
        got = run_artifact(path, fmt, sample, names)
    except Exception as exc:  # the runtime can't run what the converter wrote
        raise ExportMismatchError(f"the {fmt} artifact does not run in its runtime: {type(exc).__name__}: {first_line(exc)}") from exc
    if len(got) != len(expected):
        raise ExportMismatchError(f"the {fmt} artifact gives {len(got)} outputs, the model {len(expected)}")
    diffs = []
    for index, (ours, theirs) in enumerate(zip(got, expected, strict=True)):
        which = f" for output `{names[index]}`" if len(expected) > 1 and index < len(names) else ""
        if ours.shape != theirs.shape:
            raise ExportMismatchError(f"the {fmt} artifact gives predictions of shape {ours.shape}{which}, the model {theirs.shape}")
        diff = float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)))) if ours.size else 0.0
        if not np.allclose(ours, theirs, rtol=TOLERANCE, atol=TOLERANCE):
            raise ExportMismatchError(
                f"the {fmt} artifact does not give the model's predictions{which} on raw samples (max difference {diff:.3g}); nothing written"
            )
        diffs.append(diff)
    return max(diffs, default=0.0)


def export_run(run_dir: Path, fmt: str = "saved_model", output: Path | str | None = None, trust: bool = False) -> ExportResult:
    """Export a completed, trusted run's model with its feature preprocessing, and check it against `kerasrun predict`.

    An `output` URL (gs://…) is exported and checked locally first, then copied there with tf.io.gfile.
    """
    if fmt not in FORMATS:
        raise ConfigError(Problem(key="--format", message=f"unknown format `{fmt}`", hint=f"one of {', '.join(FORMATS)}"))
    remote = url_of(output) if isinstance(output, str) else None
    if remote is not None and (why := unsupported(remote)):
        raise ConfigError(Problem(key="--output", message=f"{remote}: {why}"))
    check_format_available(fmt)
    if remote is not None:
        check_remote_target(remote, fmt)
    else:
        check_local_target(Path(output) if output is not None else default_output(run_dir, fmt), fmt)  # before the model loads
    config, model = load_run(run_dir, trust)  # refuses untrusted and unfinished runs; safe_mode
    if len(getattr(model, "inputs", None) or [None]) > 1 and feature_steps(config):
        raise ConfigError(Problem(key="data.preprocess", message="preprocess steps apply to one input only", file=str(run_dir)))
    raw = check_samples(model, config, run_dir)
    wrapped = serving_model(model, config, raw if isinstance(raw, np.ndarray) else None, float32_math=fmt == "tflite")
    if raw is not None:
        wrapped(model_feed(sliced(raw, 1)))  # Keras's ONNX export refuses a model that was never called
    if remote is not None:
        scratch = Path(tempfile.mkdtemp(prefix="kerasrun-export-"))
        remove_at_exit(scratch)
        path = scratch / DEFAULT_NAME[fmt]
    else:
        path = Path(output) if output is not None else default_output(run_dir, fmt)
    diff = write_artifact(wrapped, fmt, path, lambda staged: check_artifact(staged, fmt, model, config, raw))
    if remote is not None:
        publish_artifact(path, remote)
    names = output_names(model)
    return ExportResult(
        path=remote or path,
        format=fmt,
        inputs=[Tensor(t.name, tuple(t.shape), str(t.dtype)) for t in getattr(wrapped, "inputs", None) or []],
        outputs=[
            Tensor(names[i] if i < len(names) else f"output_{i}", tuple(t.shape), str(t.dtype))
            for i, t in enumerate(getattr(model, "outputs", None) or [])
        ],
        steps=[describe_step(step) for step in feature_steps(config)],
        max_abs_diff=diff,
    )
