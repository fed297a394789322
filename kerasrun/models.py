"""Build the Keras model a config describes, and compile it."""

from __future__ import annotations

from typing import Any

from kerasrun import registry
from kerasrun._tf import keras
from kerasrun.config import Config
from kerasrun.errors import Collector, ConfigError, Problem


def build_model(config: Config) -> keras.Model:
    """Build the model (functional chain of layers, or a Python factory); raise ConfigError on bad specs."""
    keras.utils.set_random_seed(config.seed)  # weights and dropout seeds are drawn at build time
    keras.mixed_precision.set_global_policy(config.runtime.precision)  # set every time: it is global state
    spec = config.model
    collector = Collector()
    if spec.factory is not None:
        model = build_from_factory(config, collector)
    else:
        model = build_from_layers(config, collector)
    collector.raise_if_any()
    return model


def build_from_factory(config: Config, collector: Collector) -> Any:
    """Call `model.factory` with `model.kwargs`; it must return a keras.Model."""
    loc = ("model", "factory")
    try:
        factory = registry.import_object(config.model.factory)
    except registry.SpecError as exc:
        collector.add(config.problem(loc, str(exc), exc.hint))
        return None
    try:
        model = factory(**config.model.kwargs)
    except Exception as exc:  # a user's factory can raise anything; report it at the key
        collector.add(registry.problem_from(config, ("model", "kwargs") if config.model.kwargs else loc, exc))
        return None
    if not isinstance(model, keras.Model):
        collector.add(config.problem(loc, f"the factory returned {type(model).__name__}, expected a keras.Model"))
        return None
    return model


def build_from_layers(config: Config, collector: Collector) -> Any:
    """Chain `model.layers` from the single input in `model.inputs` into a functional model."""
    spec = config.model
    assert spec.inputs is not None
    if len(spec.inputs) != 1:
        collector.add(config.problem(("model", "inputs"), "a layer chain takes exactly one input; for several inputs use `factory`"))
        return None
    (input_name, shape), = spec.inputs.items()
    tensor = keras.Input(shape=tuple(shape), name=input_name)
    inputs = tensor
    for index, layer_spec in enumerate(spec.layers):
        loc = ("model", "layers", index)
        if index == len(spec.layers) - 1 and config.runtime.precision != "float32":
            layer_spec = with_float32_output(layer_spec)
        try:
            layer = registry.resolve_layer(layer_spec, loc)
        except registry.SpecError as exc:
            collector.add(config.problem(exc.loc or loc, str(exc), exc.hint))
            tensor = None
            continue
        if tensor is None:
            continue  # an earlier layer failed; still check the remaining specs by name
        try:
            tensor = layer(tensor)
        except Exception as exc:  # Keras raises ValueError/TypeError with its own message; keep it
            collector.add(config.problem(loc, f"{layer.__class__.__name__} cannot take its input: {first_line(exc)}"))
            tensor = None
    if tensor is None or collector.problems:
        return None
    return keras.Model(inputs=inputs, outputs=tensor, name=spec.name or config.name.replace("-", "_"))


def effective_steps_per_execution(config: Config) -> int:
    """compile.steps_per_execution, capped by steps_per_epoch and validation_steps (1 under mirrored strategies).

    Keras runs a whole execution even past those limits (fit would train or validate on more batches
    than asked), so the cap keeps both honest.
    """
    if config.runtime.strategy in ("mirrored", "multi_worker"):
        # Keras 3.15's multi-step loop fails under these strategies on TF 2.21 ("Detected at node
        # while/cond/Placeholder"), so distributed runs take one step per call.
        return 1
    limits = [config.compile.steps_per_execution, config.train.steps_per_epoch, config.train.validation_steps]
    return min(limit for limit in limits if limit)


def with_float32_output(spec: Any) -> Any:
    """The last layer computes in float32 under mixed precision, as Keras recommends, unless its dtype is set."""
    name, kwargs, keras_dict = registry.split_spec(spec)
    if "dtype" in kwargs:
        return spec
    if keras_dict is not None:
        return keras_dict | {"config": kwargs | {"dtype": "float32"}}
    return {name: kwargs | {"dtype": "float32"}}


def compile_model(model: keras.Model, config: Config) -> None:
    """Compile with the config's optimizer, loss and metrics, resolved by Keras's getters."""
    spec = config.compile
    collector = Collector()
    optimizer = registry.resolve_one(spec.optimizer, ("compile", "optimizer"), registry.resolve_optimizer, config, collector)
    loss = registry.resolve_one(spec.loss, ("compile", "loss"), registry.resolve_loss, config, collector)
    metrics = registry.resolve_each(spec.metrics, ("compile", "metrics"), registry.resolve_metric, config, collector)
    weighted = registry.resolve_each(spec.weighted_metrics, ("compile", "weighted_metrics"), registry.resolve_metric, config, collector)
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


def check_input_shape(model: keras.Model, x_shape: tuple[int, ...], config: Config) -> Problem | None:
    """A problem when the data's per-sample shape doesn't fit the model's input, naming both."""
    expected = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    if not isinstance(expected, tuple):
        return None
    expected_sample = tuple(expected[1:])
    if len(expected_sample) != len(x_shape) or any(e is not None and e != d for e, d in zip(expected_sample, x_shape)):
        loc = ("model", "inputs") if config.model.inputs else ("model", "factory")
        return config.problem(
            loc,
            f"the data's samples have shape {tuple(x_shape)} but the model expects {expected_sample}",
            hint="add a `reshape` step under data.preprocess, or change the input shape",
        )
    return None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message (Keras messages can be long)."""
    text = str(exc).strip()
    return next((line for line in text.splitlines() if line.strip()), type(exc).__name__)


def summarize(model: keras.Model) -> str:
    """`model.summary()` as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"
