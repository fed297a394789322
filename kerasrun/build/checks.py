"""Checks of a built model against its data and config: input shapes, target forms for the loss, names, the first batch."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from kerasrun._tf import keras
from kerasrun.build.model import input_names, output_names
from kerasrun.config.schema import Config
from kerasrun.config.sources import declared_names
from kerasrun.config.spec import split_spec
from kerasrun.data import Split, Stream
from kerasrun.errors import Problem, first_line, joined
from kerasrun.imports import suggest


def check_input_shape(model: keras.Model, x_shape: tuple[int, ...], config: Config) -> Problem | None:
    """A problem when the data's per-sample shape doesn't fit the model's input, naming both."""
    try:
        expected = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    except AttributeError:  # a subclassed model declares no input shape: Keras checks at the first call
        return None
    if not isinstance(expected, tuple):
        return None
    return sample_shape_problem(tuple(expected[1:]), x_shape, config)


def sample_shape_problem(expected_sample: tuple[Any, ...], x_shape: tuple[int, ...], config: Config) -> Problem | None:
    """A problem when a per-sample shape doesn't fit the one a model input expects (None fits any size)."""
    if len(expected_sample) != len(x_shape) or any(e is not None and e != d for e, d in zip(expected_sample, x_shape, strict=True)):
        loc = ("model", "inputs") if config.model.inputs else ("model", "factory")
        hint = "add a `reshape` step under data.preprocess, or change the input shape"
        if getattr(config.data, "source", None) == "image_folder" and len(expected_sample) == 3:
            # The folder's images are resized and converted as they load: a reshape can't change their size or channels.
            height, width, channels = expected_sample
            mode = {1: "grayscale", 3: "rgb", 4: "rgba"}.get(channels) if isinstance(channels, int) else None
            wanted = [f"data.image_size: [{height}, {width}]"] if height is not None and width is not None else []
            hint = f"set {' and '.join(wanted + ([f'data.color_mode: {mode}'] if mode else []))} to load images the model's size, or change the input shape"
        return config.problem(loc, f"the data's samples have shape {tuple(x_shape)} but the model expects {expected_sample}", hint=hint)
    return None


# Losses whose targets have a known form (names normalised: lower case, no underscores).
SPARSE_LOSSES = {"sparsecategoricalcrossentropy"}
ONE_HOT_LOSSES = {"categoricalcrossentropy", "categoricalfocalcrossentropy", "categoricalhinge"}
BINARY_LOSSES = {"binarycrossentropy", "binaryfocalcrossentropy"}
# Losses and metrics that compare targets and outputs element by element: the targets must have the output's width
# (Keras fails on (n,) against (n, 3), and broadcasts (n, 1) against (n, 3) without a word). Normalised name: label.
ELEMENTWISE = {
    "mse": "mse",
    "meansquarederror": "mean_squared_error",
    "mae": "mae",
    "meanabsoluteerror": "mean_absolute_error",
    "mape": "mape",
    "meanabsolutepercentageerror": "mean_absolute_percentage_error",
    "msle": "msle",
    "meansquaredlogarithmicerror": "mean_squared_logarithmic_error",
    "huber": "huber",
    "logcosh": "log_cosh",
    "rootmeansquarederror": "root_mean_squared_error",
}
# Metrics that count outputs against 0/1 targets of the output's own shape (thresholded per unit), by normalised name: label.
# Keras fails on integer labels (n,) against (n, 3) with a segment_ids error, and takes a label 2 as a target without a word.
CONFUSION = {
    name.lower().replace("_", ""): name
    for name in (
        "AUC",
        "Precision",
        "Recall",
        "TruePositives",
        "FalsePositives",
        "TrueNegatives",
        "FalseNegatives",
        "PrecisionAtRecall",
        "RecallAtPrecision",
        "SensitivityAtSpecificity",
        "SpecificityAtSensitivity",
        "F1Score",
        "FBetaScore",
    )
}
# Metrics whose targets have a known form, by normalised name (Keras's function and class names both normalise to it).
METRIC_LABELS = {
    "sparsecategoricalaccuracy": "sparse_categorical_accuracy",
    "sparsetopkcategoricalaccuracy": "sparse_top_k_categorical_accuracy",
    "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
    "categoricalaccuracy": "categorical_accuracy",
    "topkcategoricalaccuracy": "top_k_categorical_accuracy",
    "categoricalcrossentropy": "categorical_crossentropy",
    "categoricalhinge": "categorical_hinge",
    "binaryaccuracy": "binary_accuracy",
    "binarycrossentropy": "binary_crossentropy",
}
SPARSE_METRICS = {name for name in METRIC_LABELS if name.startswith("sparse")}
BINARY_METRICS = {name for name in METRIC_LABELS if name.startswith("binary")}
ONE_HOT_METRICS = set(METRIC_LABELS) - SPARSE_METRICS - BINARY_METRICS


@dataclass
class LossKind:
    """What kerasrun knows of an output's loss: its normalised name, and a label Keras ignores (`ignore_class`)."""

    name: str
    ignore_class: int | None = None
    from_logits: bool = False


def loss_kinds(config: Config, outputs: list[str]) -> dict[str, LossKind]:
    """The loss of each output that is given by Keras name (import paths and objects are not checked)."""
    loss = config.compile.loss
    if isinstance(loss, list):
        per_output = dict(zip(outputs, loss, strict=False))
    elif isinstance(loss, dict) and "class_name" not in loss and set(loss) <= set(outputs) and outputs:
        per_output = dict(loss)
    else:
        per_output = dict.fromkeys(outputs, loss)
    kinds = {}
    for output, spec in per_output.items():
        name, kwargs, _ = split_spec(spec) if isinstance(spec, (str, dict)) and spec else (None, {}, None)
        if isinstance(name, str) and ":" not in name:
            ignore = kwargs.get("ignore_class")
            kinds[output] = LossKind(
                name.lower().replace("_", ""), ignore if isinstance(ignore, int) else None, kwargs.get("from_logits") is True
            )
    return kinds


def split_targets(data: Any, outputs: list[str]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Each array split's targets by output name (a tf.data split is left out: Keras checks its batches as they come)."""
    return targets_by_output(
        [(name, getattr(data, name).y) for name in ("train", "validation", "test") if hasattr(getattr(data, name), "y")], outputs
    )


def targets_by_output(splits: list[tuple[str, Any]], outputs: list[str]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(split name, its targets) as (split name, {output name: array}), whatever structure the targets have."""
    targets = []
    for split_name, y in splits:
        by_output = y if isinstance(y, dict) else dict(zip(outputs, y, strict=False)) if isinstance(y, list) else {outputs[0]: y}
        targets.append((split_name, {output: np.asarray(value) for output, value in by_output.items()}))
    return targets


def metric_kinds(config: Config, outputs: list[str]) -> dict[str, list[tuple[tuple[Any, ...], str]]]:
    """Each output's metrics given by Keras name: (the key to report at, the normalised name); import paths are not checked.

    Which output a metric is for follows Keras's CompileMetrics: with one output every metric is its; with
    several, a mapping by output name, or a list with one entry (a metric or a list) per output.
    """
    kinds: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
    for key in ("metrics", "weighted_metrics"):
        values = getattr(config.compile, key)
        entries: list[tuple[str, tuple[Any, ...], Any]] = []  # (output, key of the entry, a metric spec or a list of them)
        if len(outputs) == 1 and isinstance(values, list):
            entries = [(outputs[0], (key, index), value) for index, value in enumerate(values)]
        elif isinstance(values, dict):
            entries = [(output, (key, output), value) for output, value in values.items()]
        elif len(values) == len(outputs):
            entries = [(output, (key, index), value) for index, (output, value) in enumerate(zip(outputs, values, strict=True))]
        for output, loc, value in entries:
            specs = [(loc, value)] if not isinstance(value, list) else [((*loc, index), item) for index, item in enumerate(value)]
            for where, spec in specs:
                name = split_spec(spec)[0] if isinstance(spec, (str, dict)) and spec else None
                if isinstance(name, str) and ":" not in name:
                    kinds.setdefault(output, []).append((("compile", *where), name.lower().replace("_", "")))
    return kinds


def check_targets(model: keras.Model, data: Any, config: Config, splits: list[tuple[str, Any]] | None = None) -> list[Problem]:
    """Targets must be what each output's loss and metrics expect: labels in [0, units) for sparse categorical ones,
    one-hot rows as wide as the output for categorical ones, values in [0, 1] for binary ones.

    One problem per key and output: the splits whose targets have it are named together. `splits`:
    (split name, targets) to check instead of data's (a streamed source's first batch).
    """
    outputs = output_names(model)
    if not outputs or not getattr(model, "outputs", None):
        return []  # a subclassed model declares no outputs: Keras checks at the first step
    shapes = {name: tuple(tensor.shape) for name, tensor in zip(outputs, model.outputs, strict=True)}
    losses = loss_kinds(config, outputs)
    metrics = metric_kinds(config, outputs)
    found: dict[tuple[tuple[Any, ...], str, str], list[str]] = {}  # (key, output, problem): the splits that have it
    for split_name, targets in split_targets(data, outputs) if splits is None else targets_by_output(splits, outputs):
        for output, y in targets.items():
            checks = [(("compile", "loss"), target_problem(losses.get(output), shapes.get(output), y))]
            if checks[0][1] is None:  # targets the loss refuses: its problem says it, not one more per metric
                ignored = getattr(losses.get(output), "ignore_class", None)  # labels the loss skips are no metric's problem either
                checks = [(loc, metric_target_problem(name, shapes.get(output), y, ignored)) for loc, name in metrics.get(output, [])]
            for loc, problem in checks:
                if problem:
                    found.setdefault((loc, output, problem), []).append(split_name)
    return [
        config.problem(loc, f"{joined(splits)} targets for output `{output}` {problem}") for (loc, output, problem), splits in found.items()
    ]


def check_batch_targets(model: keras.Model, batch: Batch, config: Config) -> list[Problem]:
    """check_targets on a streamed source's first training batch (its targets are not in memory to check whole)."""
    return check_targets(model, None, config, [("train", batch.y)])


def width_notes(model: keras.Model, data: Any, config: Config) -> list[str]:
    """One line per sparse-categorical output wider than its classes need (Keras allows it; the extra units are never a target).

    The classes are the source's class names when it has them, else labels 0 to the largest label of
    any split. Too narrow an output is check_targets's error, not a note.
    """
    outputs = output_names(model)
    if not outputs or not getattr(model, "outputs", None) or len(outputs) != 1:
        return []
    loss = loss_kinds(config, outputs).get(outputs[0])
    units = model.outputs[0].shape[-1]
    if loss is None or loss.name not in SPARSE_LOSSES or units is None or units < 2:
        return []
    tops = []
    for split_name in ("train", "validation", "test"):
        y = np.asarray(getattr(getattr(data, split_name), "y", np.zeros(0)))
        labels = y if loss.ignore_class is None else y[y != loss.ignore_class]
        if y.ndim == len(model.outputs[0].shape) and y.shape[-1] == units:
            return []  # one-hot rows: check_targets refuses them for a sparse loss
        if labels.size and labels.dtype.kind in "biu":
            tops.append(int(labels.max()))
    if not tops:
        return []
    classes = max(max(tops) + 1, len(data.class_names or []))
    if units <= classes:
        return []
    return [
        f"output `{outputs[0]}` has {units} units but the labels need {classes} (0..{classes - 1}): "
        f"the other {units - classes} are never a target (compile.loss {loss_label(loss.name)})"
    ]


# Layers that hand their input on unchanged in value: an output's activation is the one before them (mixed precision's float32 cast).
PASS_THROUGH = {"Activation", "Identity", "Dropout", "Reshape", "Flatten", "Permute"}
# What each probability loss wants the output to end in.
PROBABILITY_ACTIVATION = {
    **dict.fromkeys(SPARSE_LOSSES | {"categoricalcrossentropy", "categoricalfocalcrossentropy"}, "softmax"),
    **dict.fromkeys(BINARY_LOSSES, "sigmoid"),
}


def output_activation(tensor: Any) -> tuple[str, str] | None:
    """(the output's activation name, the layer that applies it), looking through pass-through layers; None when unknown."""
    history = getattr(tensor, "_keras_history", None)
    while history is not None:
        layer = history.operation
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None)
        if type(layer).__name__ not in PASS_THROUGH or (name not in (None, "linear")):
            return (name, layer.name) if isinstance(name, str) else None
        inputs = layer._inbound_nodes[history.node_index].input_tensors
        history = getattr(inputs[0], "_keras_history", None) if len(inputs) == 1 else None
    return None


def activation_notes(model: keras.Model, config: Config) -> list[str]:
    """One line per output whose last activation can't give what its loss reads (Keras trains it without a word).

    A linear output under a probability loss without `from_logits` is clipped to (0, 1) and gets no
    gradient where it is negative; a softmax over one unit is always 1.
    """
    outputs = output_names(model)
    if not outputs or not getattr(model, "outputs", None):
        return []
    losses = loss_kinds(config, outputs)
    notes = []
    for output, tensor in zip(outputs, model.outputs, strict=True):
        found = output_activation(tensor)
        if found is None:
            continue
        activation, layer = found
        units = tensor.shape[-1] if tensor.shape else None
        loss = losses.get(output)
        wanted = PROBABILITY_ACTIVATION.get(loss.name) if loss is not None and not loss.from_logits else None
        if activation == "softmax" and units == 1:
            notes.append(
                f"output `{output}` is a softmax over 1 unit (layer `{layer}`), which is always 1: "
                "use `activation: sigmoid` for one probability, or as many units as classes"
            )
        elif activation == "linear" and wanted is not None and loss is not None:
            notes.append(
                f"output `{output}` ends in a linear activation (layer `{layer}`), but compile.loss {loss_label(loss.name)} "
                f"reads it as probabilities: give the layer `activation: {wanted}`, or the loss `from_logits: true`"
            )
    return notes


def target_problem(loss: LossKind | None, shape: tuple[Any, ...] | None, y: np.ndarray) -> str | None:
    """What is wrong with targets `y` for an output of `shape` (batch first) trained with `loss`, or None."""
    if loss is None:
        return None
    family = (
        "sparse"
        if loss.name in SPARSE_LOSSES
        else "one_hot"
        if loss.name in ONE_HOT_LOSSES
        else "binary"
        if loss.name in BINARY_LOSSES
        else "elementwise"
        if loss.name in ELEMENTWISE
        else None
    )
    advice = {
        "sparse": "use categorical_crossentropy, or drop one_hot",
        "one_hot": "integer labels: use sparse_categorical_crossentropy, or add a one_hot step",
    }
    return form_problem(family, loss_label(loss.name), advice, shape, y, loss.ignore_class)


def metric_target_problem(name: str, shape: tuple[Any, ...] | None, y: np.ndarray, ignore_class: int | None = None) -> str | None:
    """What is wrong with targets `y` for a metric (its normalised Keras name) of an output of `shape`, or None.

    Keras computes such a metric on targets of the other form without a word — categorical_accuracy on
    integer labels reports a number that is not the accuracy — so the loss's checks apply to it too.
    """
    if name in ELEMENTWISE:
        return form_problem("elementwise", ELEMENTWISE[name], {}, shape, y, None)
    if name in CONFUSION:
        return form_problem("confusion", CONFUSION[name], {}, shape, y, None)
    label = METRIC_LABELS.get(name)
    if label is None:
        return None
    family = "sparse" if name in SPARSE_METRICS else "one_hot" if name in ONE_HOT_METRICS else "binary"
    counterpart = METRIC_LABELS.get(name.removeprefix("sparse") if family == "sparse" else f"sparse{name}")
    advice = {
        "sparse": f"use {counterpart or 'a categorical metric'}" + (", or `accuracy`" if "accuracy" in name else ""),
        "one_hot": f"integer labels: use {counterpart or 'a sparse metric'}" + (", or `accuracy`" if "accuracy" in name else ""),
    }
    return form_problem(family, label, advice, shape, y, ignore_class)


def form_problem(
    family: str | None, label: str, advice: dict[str, str], shape: tuple[Any, ...] | None, y: np.ndarray, ignore_class: int | None
) -> str | None:
    """What is wrong with targets `y` for a loss or metric of `family` (sparse, one_hot, binary) on an output of `shape`, or None."""
    if family is None or not shape or shape[-1] is None or y.size == 0 or y.dtype.kind not in "biuf":
        return None
    units = shape[-1]
    if family == "sparse":
        # One-hot rows look like the output itself; labels of sequences, (n, T), have one dimension less.
        if y.ndim == len(shape) and y.shape[-1] == units and units > 1:
            return f"are one-hot rows of width {units}, but {label} wants integer labels ({advice['sparse']})"
        labels = y if ignore_class is None else y[y != ignore_class]
        if labels.size == 0:
            return None
        if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))].flat[0]
            return f"hold non-integer labels such as {bad} ({label} wants class numbers)"
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high >= units:
            return f"go up to label {high}, but the output has {units} units: {label} wants labels in [0, {units}) (give it at least {high + 1} units)"
        if low < 0:
            ignored = f" (besides ignore_class {ignore_class})" if ignore_class is not None else ""
            return f"range over {low}..{high}{ignored}, but the output has {units} units: {label} wants labels in [0, {units})"
    elif family == "one_hot":
        width = y.shape[-1] if y.ndim >= 2 else 1
        if width != units:
            return f"are {width} wide, but the output has {units} units: {label} wants one-hot rows as wide as the output ({advice['one_hot']})"
    elif family == "binary" and (y.min() < 0 or y.max() > 1):
        return f"range over {y.min():g}..{y.max():g}, but {label} wants values in [0, 1]"
    elif family in ("elementwise", "confusion"):
        width = y.shape[-1] if y.ndim == len(shape) else 1 if y.ndim == len(shape) - 1 else units
        if width != units:
            wants, labels_hint = (
                ("wants a 0/1 target for every output unit", f"add `one_hot: {units}` under data.preprocess, or use `accuracy`")
                if family == "confusion"
                else ("compares targets and outputs element by element", "use sparse_categorical_crossentropy")
            )
            classes = f" (class labels: {labels_hint})" if width == 1 and y.dtype.kind in "biu" else ""
            return f"are {width} wide, but the output has {units} units: {label} {wants}{classes}"
        if family == "confusion" and (y.min() < 0 or y.max() > 1):
            return f"range over {y.min():g}..{y.max():g}, but {label} wants 0/1 targets (values in [0, 1])"
    return None


def loss_label(normalised: str) -> str:
    """A normalised loss name back in Keras's snake case."""
    return {
        "sparsecategoricalcrossentropy": "sparse_categorical_crossentropy",
        "categoricalcrossentropy": "categorical_crossentropy",
        "categoricalfocalcrossentropy": "categorical_focal_crossentropy",
        "categoricalhinge": "categorical_hinge",
        "binarycrossentropy": "binary_crossentropy",
        "binaryfocalcrossentropy": "binary_focal_crossentropy",
        **ELEMENTWISE,
    }.get(normalised, normalised)


class Batch(NamedTuple):
    """One training batch as Keras's train step gets it: features, targets, sample weights (None, or one per output in order)."""

    x: Any
    y: Any
    sample_weight: Any


def first_training_batch(model: keras.Model, split: Any, config: Config) -> Batch | None:
    """The first train.batch_size samples of array data or of a streamed source (CSV, TFRecord, image folder), to check; None when none is.

    A Stream's batch is read from its files in file order, which costs one batch of decoding. A python
    source's tf.data.Dataset is not read: it may reshuffle on every iteration, and an extra pass
    would change the order training sees.
    """
    if config.train.step is not None or config.runtime.strategy != "none":
        return None  # a user step computes its own loss and metrics; under a strategy, variables are created on the replicas
    if isinstance(split, Stream):
        # The rows of a Stream are built fresh by every elements() call, with no random op: reading one batch changes nothing.
        element = next(iter(split.elements().batch(config.train.batch_size).take(1)), None)
        if element is None:
            return None
        x, y, *weight = element
        return Batch(x, y, weight[0] if weight else None)
    if not isinstance(split, Split):
        return None
    batch = split.take(slice(0, min(config.train.batch_size, len(split))))
    sample_weight: Any = batch.sample_weight
    if isinstance(sample_weight, dict):  # per output, as make_dataset passes them
        sample_weight = tuple(sample_weight[name] for name in output_names(model))
    return Batch(batch.x, batch.y, sample_weight)


def check_first_batch(model: keras.Model, data: Any, config: Config, batch: Batch | None = None) -> Problem | None:
    """Put the first training batch through the model and its loss, eagerly, before any folder exists.

    What the static checks can't see — a custom loss that wants other shapes or dtypes, a layer that
    can't take these values — then fails here as one located line instead of in the first step of
    training, after the run folder was made. It runs in inference mode inside a StatelessScope: no
    variable changes (a stateful RNN keeps its state, metric trackers their counts). `batch`: the
    first_training_batch already read, if it was.
    """
    if (batch := batch or first_training_batch(model, data.train, config)) is None:
        return None  # a python source's tf.data.Dataset is checked by Keras as its batches come
    # A model may override compute_loss without `training` (Keras allows it): pass it only if taken.
    extra = {"training": False} if "training" in inspect.signature(model.compute_loss).parameters else {}
    try:
        # Reads see every variable's value; writes stay in the scope (a stateful RNN keeps its state).
        state = [(variable, variable.value) for variable in [*model.variables, *model.metrics_variables]]
        with keras.StatelessScope(state_mapping=state, collect_losses=True):  # add_loss terms are gathered in the scope
            y_pred = model(batch.x, training=False)
            model.compute_loss(x=batch.x, y=batch.y, y_pred=y_pred, sample_weight=batch.sample_weight, **extra)
    except Exception as exc:  # Keras and TensorFlow raise many kinds; the first line says what
        return config.problem(
            ("compile", "loss"), f"the first training batch does not go through the model and its loss: {first_line(exc)}"
        )
    return None


def check_first_batch_metrics(model: keras.Model, data: Any, config: Config, batch: Batch | None = None) -> Problem | None:
    """Put the first training batch through the compiled metrics, as check_first_batch does through the loss.

    A metric that can't take these targets (AUC on a 10-class softmax with integer labels) otherwise
    fails in the first step, after the run folder was made. Keras creates the metrics' variables
    here (zeros, as it would in the first step); their updates stay in the StatelessScope.
    """
    spec = config.compile
    if not (spec.metrics or spec.weighted_metrics):
        return None
    if (batch := batch or first_training_batch(model, data.train, config)) is None:
        return None
    try:
        y_pred = model(batch.x, training=False)
        state = [(variable, variable.value) for variable in [*model.variables, *model.metrics_variables]]
        with keras.StatelessScope(state_mapping=state):
            model.compute_metrics(batch.x, batch.y, y_pred, batch.sample_weight)
    except Exception as exc:  # Keras and TensorFlow raise many kinds; the first line says what
        keys = [key for key in ("metrics", "weighted_metrics") if getattr(spec, key)]
        return config.problem(
            ("compile", *keys) if len(keys) == 1 else ("compile",),
            f"the first training batch does not go through the {' or '.join(keys)}: {first_line(exc)}",
            "each metric must fit the targets (integer labels or one-hot rows) and the output it is given",
        )
    return None


def check_declared_names(model: keras.Model, config: Config) -> list[Problem]:
    """The input and output names the data section declares must be the model's: found by `validate --build`, before any data is read."""
    problems = []
    for side, declared, names in (
        ("input", declared_names(config.data)[0], input_names(model)),
        ("output", declared_names(config.data)[1], output_names(model)),
    ):
        if not names:
            continue  # a subclassed model names nothing before its first call
        for key, given in declared.items():
            problems += [
                config.problem(
                    ("data", *key, name), f"the model has no {side} `{name}`", suggest(name, names) or f"{side}s: {', '.join(names)}"
                )
                for name in given
                if name not in names
            ]
    return problems


def check_data_names(model: keras.Model, data: Any, config: Config) -> list[Problem]:
    """Named arrays must match the model's input and output names (both sides named in the message)."""
    split = data.train
    problems = []
    sides = (("x", getattr(split, "x", None), input_names(model)), ("y", getattr(split, "y", None), output_names(model)))
    for side, arrays, names in sides:
        if not isinstance(arrays, dict) or not names:
            continue
        what = "input" if side == "x" else "output"
        problems += [
            config.problem(("data",), f"the data's {side} array `{key}` matches no model {what} ({', '.join(names)})", suggest(key, names))
            for key in arrays
            if key not in names
        ]
        problems += [
            config.problem(("data",), f"the model's {what} `{name}` gets no data (the {side} arrays: {', '.join(arrays)})")
            for name in names
            if name not in arrays
        ]
    return problems
