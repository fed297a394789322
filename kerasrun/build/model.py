"""Build the Keras model a config describes, and compile it."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from kerasrun._tf import keras
from kerasrun.build import adapt, registry
from kerasrun.build.layers import ActivationStatistic
from kerasrun.config.model import input_shape_and_dtype
from kerasrun.config.schema import Config, metrics_per_output_problem
from kerasrun.config.spec import adapt_flag, split_layer_entry, split_spec
from kerasrun.data import Data
from kerasrun.errors import Collector, ConfigError, first_line
from kerasrun.imports import SpecError, import_object, suggest
from kerasrun.keras_private import symbolic_build


def build_model(config: Config, data: Data | Callable[[], Data] | None = None) -> keras.Model:
    """Build the model (functional chain of layers, or a Python factory); raise ConfigError on bad specs.

    With `data`, each layer of `model.layers` that needs adapting is adapted on the training split
    before it is called (its notes go to `data.notes`). `data` may be a function that loads it:
    `validate --build` and `plot-model` read the data only when a layer needs adapting. Without
    data none is adapted. A factory's layers are adapted later, by `adapt.adapt_layers`.
    """
    keras.utils.set_random_seed(config.seed)  # weights and dropout seeds are drawn at build time
    keras.mixed_precision.set_global_policy(config.runtime.precision)  # set every time: it is global state
    spec = config.model
    collector = Collector()
    if spec.factory is not None:
        model = build_from_factory(config, collector)
    else:
        model = build_from_layers(config, collector, data)
    collector.raise_if_any()
    return model


def build_from_factory(config: Config, collector: Collector) -> Any:
    """Call `model.factory` with `model.kwargs`; it must return a keras.Model."""
    assert config.model.factory is not None  # build_model calls this only for a factory model
    loc = ("model", "factory")
    try:
        factory = import_object(config.model.factory)
    except SpecError as exc:
        collector.add(config.problem(loc, str(exc), exc.hint))
        return None
    try:
        model = factory(**config.model.kwargs)
    except Exception as exc:  # a user's factory can raise anything; report it at the key
        problem = registry.problem_from(config, ("model", "kwargs") if config.model.kwargs else loc, exc)
        if "fully-defined" in str(exc):  # Keras's words for a layer built on an unknown width, as after an un-adapted lookup
            problem.hint = (
                "kerasrun adapts a factory's layers only after it returns: adapt a preprocessing layer inside the factory "
                "before calling it (layer.adapt(data), as keras.io does), or give it its state "
                "(`vocabulary`, or `max_tokens` with `pad_to_max_tokens=True`)"
            )
        collector.add(problem)
        return None
    if not isinstance(model, keras.Model):
        collector.add(config.problem(loc, f"the factory returned {type(model).__name__}, expected a keras.Model"))
        return None
    return model


def build_from_layers(config: Config, collector: Collector, data: Data | Callable[[], Data] | None = None) -> Any:
    """Wire `model.layers` into a functional graph: each layer takes the previous output or the named `inputs`.

    A layer that needs adapting is created, adapted on what reaches it from `data`'s training split,
    then called — keras.io's order, so the layers after it see its adapted output width.
    """
    spec = config.model
    assert spec.inputs is not None
    tensors: dict[str, Any] = {}
    for name, input_spec in spec.inputs.items():
        shape, dtype = input_shape_and_dtype(input_spec)
        tensors[name] = keras.Input(shape=shape, name=name, dtype=dtype)
    model_inputs = list(tensors.values())
    previous = model_inputs[0] if len(model_inputs) == 1 else None
    failed = False
    broken: set[str] = set()  # names of layers that failed: references to them are not reported again
    watched: dict[str, list[Any]] = {}
    # id(tensor) → the un-adapted layers it comes from: named when a layer after them can't be built.
    unadapted: dict[int, list[adapt.Unadapted]] = {}
    for watch in spec.activation_metrics:
        watched.setdefault(watch.layer, []).append(watch)
    for index, entry in enumerate(spec.layers):
        loc = ("model", "layers", index)
        layer_spec, refs = split_layer_entry(entry)
        if refs is not None and broken & set([refs] if isinstance(refs, str) else refs):
            broken.add(split_spec(layer_spec)[1].get("name", f"<layer {index}>"))
            continue
        if index == len(spec.layers) - 1 and not spec.outputs and config.runtime.precision != "float32":
            layer_spec = with_float32_output(layer_spec)
        try:
            layer = registry.resolve_layer(layer_spec, loc)
        except SpecError as exc:
            collector.add(config.problem(exc.loc or loc, str(exc), exc.hint))
            broken.add(split_spec(layer_spec)[1].get("name", f"<layer {index}>"))
            failed = True
            continue
        argument = layer_argument(refs, previous, tensors, config, loc, collector) if not (failed and refs is None) else None
        if argument is None:
            broken.add(layer.name)
            failed = True
            continue
        flag = adapt_flag(entry)
        if problem := adapt.flag_problem(layer, flag, loc, config):
            collector.add(problem)
        upstream = [u for tensor in argument_tensors(argument) for u in unadapted.get(id(tensor), [])]
        if adapt.wants_adapting(layer, flag) and not (flag is True and problem):
            if callable(data):  # read only now: a model without layers to adapt is inspected without its data
                data = data()
            if data is None:
                upstream.append(adapt.Unadapted(layer, loc, "no data was given to adapt it on"))
            else:
                try:
                    adapt.adapt_before_call(layer, argument, model_inputs_by_name(tensors, spec.inputs), data, config, loc)
                except ConfigError as exc:
                    for adapt_problem in exc.problems:
                        collector.add(adapt_problem)
                    broken.add(layer.name)
                    failed = True
                    continue
                if flag is None:
                    data.notes.append(adapt.adapted_note(layer, data))
        elif flag is False and adapt.needs_adapting(layer):
            upstream.append(adapt.Unadapted(layer, loc, "its entry says `adapt: false`"))
        try:
            previous = layer(argument)
        except Exception as exc:  # Keras raises ValueError/TypeError with its own message; keep it
            hint = adapt.unadapted_hint(upstream, config)
            collector.add(config.problem(loc, f"{layer.__class__.__name__} cannot take its input: {first_line(exc)}", hint))
            broken.add(layer.name)
            failed = True
            continue
        if layer.name in tensors:
            collector.add(config.problem(loc, f"the name `{layer.name}` is already used", "give each layer a unique `name`"))
        for watch in watched.get(layer.name, []):
            previous = ActivationStatistic(
                watch.statistic, watch.name or f"{layer.name}_{watch.statistic}", name=f"{layer.name}_{watch.statistic}_statistic"
            )(previous)
        if upstream:
            unadapted[id(previous)] = upstream
        tensors[layer.name] = previous
    for index, watch in enumerate(spec.activation_metrics):
        if watch.layer not in tensors and watch.layer not in broken:
            collector.add(
                config.problem(
                    ("model", "activation_metrics", index, "layer"),
                    f"no layer is named `{watch.layer}`",
                    suggest(watch.layer, list(tensors)),
                )
            )
    if failed or collector.problems:
        return None
    outputs = model_outputs(spec.outputs, previous, tensors, config, collector)
    if outputs is None:
        return None
    inputs = model_inputs[0] if len(model_inputs) == 1 else {name: tensors[name] for name in spec.inputs}
    return keras.Model(inputs=inputs, outputs=outputs, name=spec.name or config.name.replace("-", "_"))


def model_inputs_by_name(tensors: dict[str, Any], names: Any) -> dict[str, Any]:
    """The model's input tensors by name, in the config's order."""
    return {name: tensors[name] for name in names}


def argument_tensors(value: Any) -> list[Any]:
    """The tensors of a layer's argument: one tensor or a list of them."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def layer_argument(refs: Any, previous: Any, tensors: dict[str, Any], config: Config, loc: tuple, collector: Collector) -> Any:
    """The tensor(s) a layer is called on: the previous output, or the named inputs/layers."""
    if refs is None:
        if previous is None:
            collector.add(
                config.problem(
                    loc, "with several model inputs, say which this layer takes", "add `inputs: <input or layer name>` to the entry"
                )
            )
        return previous
    names = [refs] if isinstance(refs, str) else list(refs)
    missing = [name for name in names if name not in tensors]
    for name in missing:
        collector.add(
            config.problem(
                loc + ("inputs",),
                f"`{name}` is not a model input or an earlier layer (layers are applied in order)",
                suggest(name, list(tensors)),
            )
        )
    if missing:
        return None
    # One name (or a one-name list) is the tensor itself: a single-input layer takes no list.
    return tensors[names[0]] if len(names) == 1 else [tensors[name] for name in names]


def model_outputs(names: list[str] | None, previous: Any, tensors: dict[str, Any], config: Config, collector: Collector) -> Any:
    """The model's output tensor(s): the named layers, or the last layer's output."""
    if not names:
        return previous
    missing = [name for name in names if name not in tensors]
    for name in missing:
        collector.add(config.problem(("model", "outputs"), f"`{name}` is not a layer of the model", suggest(name, list(tensors))))
    if missing:
        return None
    return tensors[names[0]] if len(names) == 1 else [tensors[name] for name in names]


def effective_steps_per_execution(config: Config) -> int:
    """compile.steps_per_execution, lowered to divide steps_per_epoch, validation_steps and evaluate.steps (1 under mirrored strategies).

    Keras runs whole executions even past those limits (with 32 steps per call, steps_per_epoch: 50
    trains 64 steps), so the largest count that divides every limit keeps them exact.
    """
    if config.runtime.strategy in ("mirrored", "multi_worker"):
        # Keras 3.15's multi-step loop fails under these strategies on TF 2.21 ("Detected at node
        # while/cond/Placeholder"), so distributed runs take one step per call.
        return 1
    limits = [limit for limit in (config.train.steps_per_epoch, config.train.validation_steps, config.evaluate.steps) if limit]
    return next(n for n in range(config.compile.steps_per_execution, 0, -1) if all(limit % n == 0 for limit in limits))


def with_float32_output(spec: Any) -> Any:
    """The last layer computes in float32 under mixed precision, as Keras recommends, unless its dtype is set."""
    name, kwargs, keras_dict = split_spec(spec)
    if "dtype" in kwargs:
        return spec
    if keras_dict is not None:
        return keras_dict | {"config": kwargs | {"dtype": "float32"}}
    return {name: kwargs | {"dtype": "float32"}}


def input_names(model: keras.Model) -> list[str]:
    """The model's input names (none for a subclassed model)."""
    return [tensor.name for tensor in getattr(model, "inputs", None) or []]


def output_names(model: keras.Model) -> list[str]:
    """The model's output names (none for a subclassed model)."""
    return list(getattr(model, "output_names", None) or [])


def schedule_problem(optimizer: Any) -> str | None:
    """Why a learning-rate schedule gives no rate for the first step, or None: Keras only calls it once training runs."""
    # The optimizer's public config holds a schedule as its serialization dict (a plain rate as a number).
    if not isinstance(optimizer.get_config().get("learning_rate"), dict):
        return None
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    try:
        rate = float(schedule(0))
    except Exception as exc:  # a string where a number goes fails inside TensorFlow, in any of its kinds
        return f"the learning-rate schedule {type(schedule).__name__} gives no rate for step 0: {first_line(exc)}"
    return None if math.isfinite(rate) else f"the learning-rate schedule {type(schedule).__name__} gives {rate} for step 0"


def compile_model(model: keras.Model, config: Config) -> None:
    """Compile with the config's optimizer, loss and metrics, resolved by Keras's getters."""
    spec = config.compile
    collector = Collector()
    optimizer = registry.resolve_one(spec.optimizer, ("compile", "optimizer"), registry.resolve_optimizer, config, collector)
    if optimizer is not None and (problem := schedule_problem(optimizer)):
        collector.add(config.problem(("compile", "optimizer"), problem))
    outputs = output_names(model)
    loss = resolve_per_output(spec.loss, ("compile", "loss"), registry.resolve_loss, outputs, config, collector)
    metrics = resolve_per_output(
        spec.metrics, ("compile", "metrics"), registry.resolve_metric, outputs, config, collector, isinstance(spec.metrics, dict)
    )
    weighted = resolve_per_output(
        spec.weighted_metrics,
        ("compile", "weighted_metrics"),
        registry.resolve_metric,
        outputs,
        config,
        collector,
        isinstance(spec.weighted_metrics, dict),
    )
    if isinstance(spec.loss_weights, dict):
        check_output_keys(spec.loss_weights, ("compile", "loss_weights"), outputs, config, collector)
    if config.model.output_count() is None and getattr(model, "outputs", None):  # a factory's outputs are known once built
        for key in ("metrics", "weighted_metrics"):
            if problem := metrics_per_output_problem(getattr(spec, key), len(model.outputs)):
                collector.add(config.problem(("compile", key), problem))
    collector.raise_if_any()
    try:
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics or None,
            weighted_metrics=weighted or None,
            loss_weights=spec.loss_weights,
            steps_per_execution=effective_steps_per_execution(config),
            jit_compile=spec.jit_compile,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(config.problem(("compile",), f"Keras rejected compile(): {first_line(exc)}")) from None


def build_training_state(model: keras.Model, dataset: Any) -> None:
    """Create the optimizer, loss and metric variables before the first step is traced.

    Without a tf.distribute strategy Keras creates them while tracing, and a tf.function that
    created variables is traced a second time: building them first (symbolically from the
    dataset's element spec, as Keras itself does under a strategy) halves the tracing of the train
    and test steps. The variables start at zeros either way, so the numbers are the same.
    """
    symbolic_build(model, getattr(dataset, "element_spec", None))


def resolve_per_output(
    value: Any, loc: tuple, resolve: Any, outputs: list[str], config: Config, collector: Collector, per_output_only: bool = False
) -> Any:
    """Resolve one spec, a list (per output, or a metric list), or {output_name: spec}; null stays null."""
    if value is None or value == {}:
        return None
    if isinstance(value, list):
        return [resolve_per_output(item, loc + (i,), resolve, outputs, config, collector) for i, item in enumerate(value)]
    if isinstance(value, dict) and "class_name" not in value:
        (key, item), *rest = value.items()
        # `{Name: {kwargs}}` is one object; anything else keyed by names is per output.
        single_object = not rest and key not in outputs and isinstance(item, (dict, type(None))) and not per_output_only
        if not single_object:
            check_output_keys(value, loc, outputs, config, collector)
            return {k: resolve_per_output(v, loc + (k,), resolve, outputs, config, collector) for k, v in value.items() if k in outputs}
    return registry.resolve_one(value, loc, resolve, config, collector)


def check_output_keys(mapping: dict[str, Any], loc: tuple, outputs: list[str], config: Config, collector: Collector) -> None:
    """Every key of a per-output mapping must name a model output."""
    for key in mapping:
        if key not in outputs:
            collector.add(
                config.problem(loc + (key,), f"the model has no output `{key}`", suggest(key, outputs) or f"outputs: {', '.join(outputs)}")
            )


SUMMARY_WIDTH = 100  # characters a line of summary.txt: every column of Keras's table, whatever the terminal


def summarize(model: keras.Model) -> str:
    """`model.summary()` as plain text, SUMMARY_WIDTH wide."""
    lines: list[str] = []
    # Keras's table is as wide as line_length, but rich's console cuts it to the terminal's width, 80 without
    # one (CI, a pipe, nohup): the Param # column went missing. rich reads COLUMNS when it makes the console.
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(SUMMARY_WIDTH)
    try:
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=SUMMARY_WIDTH)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(lines) + "\n"


def draw_model(model: keras.Model, path: Any) -> bool:
    """Draw the model to `path` with keras.utils.plot_model; False when pydot or Graphviz is missing."""
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True)
    except ImportError:
        return False
    return bool(path.exists()) if hasattr(path, "exists") else True
