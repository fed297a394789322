"""Preprocessing layers adapted on the training split, inside the model: the saved model carries what they learned.

`Normalization` (mean and variance), `Discretization` (bin boundaries), `IntegerLookup`,
`StringLookup` and `TextVectorization` (vocabularies) are adapted when a config builds them without
that state — or any layer with an `adapt` method when its entry says `adapt: true`. Each is adapted
with Keras's own `layer.adapt`, on what reaches it from the training split only (never validation or
test data), in the order the layers are listed, before training and before any run folder exists.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from kerasrun._tf import keras
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


@dataclass(frozen=True)
class Target:
    """A layer to adapt, and the config key it comes from."""

    layer: Any
    loc: tuple[Any, ...]
    explicit: bool  # the entry said `adapt: true` (else kerasrun chose to, and says so)


# model → its layers' adapt settings, recorded while the model is built from `model.layers`.
ENTRIES: weakref.WeakKeyDictionary[Any, list[tuple[Any, tuple[Any, ...], bool | None]]] = weakref.WeakKeyDictionary()


def needs_adapting(layer: Any) -> bool:
    """A preprocessing layer built without the state its adapt computes (Normalization without mean, a lookup without vocabulary)."""
    key = STATE_ARGUMENT.get(type(layer).__name__)
    return key is not None and callable(getattr(layer, "adapt", None)) and layer.get_config().get(key) is None


def adapt_targets(model: Any, config: Config) -> list[Target]:
    """The layers to adapt, in the order they are listed; a layer with `adapt: true` but no adapt method is a problem."""
    entries = ENTRIES.get(model)
    if entries is None:  # a factory's model: every layer that needs it
        return [Target(layer, ("model", "factory"), False) for layer in model.layers if needs_adapting(layer)]
    problems: list[Problem] = []
    targets = []
    for layer, loc, flag in entries:
        if flag is True and not callable(getattr(layer, "adapt", None)):
            problems.append(
                config.problem(loc + ("adapt",), f"{type(layer).__name__} has no adapt method", "adapt: true is for preprocessing layers")
            )
        elif flag is True or (flag is None and needs_adapting(layer)):
            targets.append(Target(layer, loc, flag is True))
    if problems:
        raise ConfigError(problems)
    return targets


def adapt_layers(model: Any, data: Data, config: Config) -> list[str]:
    """Adapt every target layer on the training split; one note per layer kerasrun chose to adapt."""
    notes = []
    for target in adapt_targets(model, config):
        name = f"{type(target.layer).__name__} `{target.layer.name}`"
        try:
            target.layer.adapt(layer_input(model, target.layer, data.train, config))
        except ConfigError:
            raise
        except Exception as exc:  # Keras raises many kinds for data a layer can't learn from
            raise ConfigError(config.problem(target.loc, f"cannot adapt {name} on the training split: {first_line(exc)}")) from None
        if not target.explicit:
            notes.append(f"adapted {name} on the training split ({len(data.train)} samples): it was built without its state")
    return notes


def layer_input(model: Any, layer: Any, train: Any, config: Config) -> Any:
    """What reaches `layer` from the training split: the arrays themselves when it takes a model input, else the model so far applied to them."""
    inputs = list(model.inputs)
    direct = next((i for i, tensor in enumerate(inputs) if tensor is layer.input), None)
    if isinstance(train, Split):
        x = train.x
        if direct is not None:  # as a plain Keras script adapts: layer.adapt(x_train)
            return x[inputs[direct].name] if isinstance(x, dict) else x
        feeder = keras.Model(model.inputs, layer.input)
        return feeder.predict(x, batch_size=config.train.batch_size, verbose=0)
    batches = make_dataset(train, config.train.batch_size, False, config.seed).map(lambda *element: element[0])
    if direct is not None:
        return batches.map(lambda x: x[inputs[direct].name]) if isinstance(batches.element_spec, dict) else batches
    feeder = keras.Model(model.inputs, layer.input)
    return batches.map(lambda x: feeder(x, training=False))
