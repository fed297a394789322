"""Preprocessing layers adapted on the training split, inside the model: the saved model carries what they learned.

`Normalization` (mean and variance), `Discretization` (bin boundaries), `IntegerLookup`,
`StringLookup` and `TextVectorization` (vocabularies) are adapted when a config builds them without
that state — or any layer with an `adapt` method when its entry says `adapt: true`. Each is adapted
with Keras's own `layer.adapt`, on what reaches it from the training split only (never validation or
test data). A layer of `model.layers` is adapted as keras.io does it: created, adapted, then called
on its input — so its output width (a one-hot lookup's vocabulary size) is known to the layers
after it. A factory's model is adapted after the factory returned it, in the order of its layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasrun._tf import keras, tf
from kerasrun.config.schema import Config
from kerasrun.data import Data, Split, make_dataset
from kerasrun.errors import ConfigError, Problem, first_line

# The constructor argument holding the state adapt computes: a layer built without it needs adapting.
STATE_ARGUMENT = {
    "Normalization": "mean",
    "Discretization": "bin_boundaries",
    "IntegerLookup": "vocabulary",
    "StringLookup": "vocabulary",
    "TextVectorization": "vocabulary",
}

# What to give instead, when a layer can't be adapted: the state itself, or a width fixed in advance.
STATE_FIX = {
    "Normalization": "give its `mean` and `variance`",
    "Discretization": "give its `bin_boundaries`",
    "IntegerLookup": "give its `vocabulary` (or `max_tokens` with `pad_to_max_tokens: true`)",
    "StringLookup": "give its `vocabulary` (or `max_tokens` with `pad_to_max_tokens: true`)",
    "TextVectorization": "give its `vocabulary` (or `max_tokens` with `pad_to_max_tokens: true`)",
}


@dataclass(frozen=True)
class Unadapted:
    """A layer that needs adapting but was built without it, and why: named when a layer after it can't be built."""

    layer: Any
    loc: tuple[Any, ...]
    reason: str


def unadapted_hint(upstream: list[Unadapted], config: Config) -> str | None:
    """The un-adapted layers a failing layer depends on, grouped by why, with each one's fix."""
    if not upstream:
        return None
    by_reason: dict[str, dict[str, str]] = {}
    for item in upstream:
        name = f"{type(item.layer).__name__} `{item.layer.name}` ({config.problem(item.loc, '').key})"
        by_reason.setdefault(item.reason, {})[name] = STATE_FIX.get(type(item.layer).__name__, "give it its state")
    parts = []
    for reason, layers in by_reason.items():
        fixes = "; ".join(dict.fromkeys(layers.values()))
        fixes = fixes if len(layers) == 1 else fixes.replace("give its", "give each its")
        parts.append(f"{', '.join(layers)} {'is' if len(layers) == 1 else 'are'} not adapted ({reason}), so the width is unknown: {fixes}")
    return "; ".join(parts)


def needs_adapting(layer: Any) -> bool:
    """A preprocessing layer built without the state its adapt computes (Normalization without mean, a lookup without vocabulary)."""
    key = STATE_ARGUMENT.get(type(layer).__name__)
    return key is not None and callable(getattr(layer, "adapt", None)) and layer.get_config().get(key) is None


def wants_adapting(layer: Any, flag: bool | None) -> bool:
    """Whether kerasrun adapts this layer: `adapt: true`, or no `adapt` given and the layer lacks its state."""
    return flag is True or (flag is None and needs_adapting(layer))


def flag_problem(layer: Any, flag: bool | None, loc: tuple[Any, ...], config: Config) -> Problem | None:
    """`adapt: true` on a layer without an adapt method is a problem."""
    if flag is True and not callable(getattr(layer, "adapt", None)):
        return config.problem(loc + ("adapt",), f"{type(layer).__name__} has no adapt method", "adapt: true is for preprocessing layers")
    return None


def adapt_before_call(layer: Any, argument: Any, inputs: dict[str, Any], data: Data, config: Config, loc: tuple[Any, ...]) -> None:
    """Adapt `layer` on what reaches `argument` (a tensor of the graph being built) from the training split, before it is called."""
    try:
        layer.adapt(layer_input(argument, inputs, data.train, config))
    except ConfigError:
        raise
    except Exception as exc:  # Keras raises many kinds for data a layer can't learn from
        raise ConfigError(adapt_problem(layer, loc, exc, config)) from None


def adapt_problem(layer: Any, loc: tuple[Any, ...], exc: Exception, config: Config) -> Problem:
    """`cannot adapt X on the training split: Keras's message`, with the fix: the state itself, or `adapt: false`."""
    fix = STATE_FIX.get(type(layer).__name__, "give it its state")
    return config.problem(
        loc,
        f"cannot adapt {type(layer).__name__} `{layer.name}` on the training split: {first_line(exc)}",
        f"{fix}, or set `adapt: false` on the entry",
    )


def adapted_note(layer: Any, data: Data) -> str:
    """The note for a layer kerasrun chose to adapt."""
    return (
        f"adapted {type(layer).__name__} `{layer.name}` on the training split ({len(data.train)} samples): it was built without its state"
    )


def adapt_layers(model: Any, data: Data, config: Config) -> list[str]:
    """Adapt a factory model's layers that need it, after the factory built them; one note per layer."""
    notes = []
    loc = ("model", "factory")
    for layer in model.layers:
        if not needs_adapting(layer):
            continue
        try:
            inputs = {tensor.name: tensor for tensor in model.inputs}  # a subclassed model has none: Keras's error is reported
            layer.adapt(layer_input(layer.input, inputs, data.train, config))
        except ConfigError:
            raise
        except Exception as exc:  # Keras raises many kinds for data a layer can't learn from
            raise ConfigError(adapt_problem(layer, loc, exc, config)) from None
        notes.append(adapted_note(layer, data))
    return notes


def layer_input(argument: Any, inputs: dict[str, Any], train: Any, config: Config) -> Any:
    """What reaches `argument` from the training split: the arrays themselves when it is a model input, else the graph so far applied to them."""
    names = list(inputs)
    direct = next((name for name, tensor in inputs.items() if tensor is argument), None)
    structure = inputs[names[0]] if len(names) == 1 else inputs  # the model's own input structure
    if isinstance(train, Split):
        x = named_arrays(train.x, names)
        if direct is not None:  # as a plain Keras script adapts: layer.adapt(x_train)
            if isinstance(x, dict) and direct not in x:
                raise ConfigError(config.problem(("data",), f"the training data has no input `{direct}` (it has: {', '.join(x)})"))
            array = x[direct] if isinstance(x, dict) else x
            check_sample_shape(array, argument, config)
            return array
        feeder = keras.Model(structure, argument)
        # Keras's array adapter refuses NumPy string arrays; as tensors they go through unchanged.
        return feeder.predict(tf.nest.map_structure(tensor_if_text, x), batch_size=config.train.batch_size, verbose=0)
    batches = make_dataset(train, config.train.batch_size, False, config.seed).map(lambda *element: element[0])
    if direct is not None:
        return batches.map(lambda x: x[direct]) if isinstance(batches.element_spec, dict) else batches
    feeder = keras.Model(structure, argument)
    return batches.map(lambda x: feeder(x, training=False))


def check_sample_shape(array: Any, tensor: Any, config: Config) -> None:
    """Data of the wrong shape is reported as the model's input check reports it, not as what adapt makes of it."""
    from kerasrun.build.checks import sample_shape_problem  # checks imports the model builder, which imports this module

    if hasattr(array, "shape") and (problem := sample_shape_problem(tuple(tensor.shape[1:]), tuple(array.shape[1:]), config)):
        raise ConfigError(problem)


def named_arrays(x: Any, names: list[str]) -> Any:
    """A list of input arrays (Keras's positional form) as {name: array} in the model's input order."""
    return dict(zip(names, x, strict=True)) if isinstance(x, list) and len(x) == len(names) and len(names) > 1 else x


def tensor_if_text(array: Any) -> Any:
    """A NumPy array of strings as a string tensor; anything else as it is."""
    return tf.constant(array) if isinstance(array, np.ndarray) and array.dtype.kind in "USO" else array
