"""The seed's hand-built Layer and Model ("Making new layers and models via subclassing"): `SimpleDense` with
`build`/`call`, and `MySequential`, a subclassed `keras.Model`. `make_model` is the factory that
configs/digits_subclassed_model.yaml names with `model.factory`.
"""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "kerasrun_examples"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SimpleDense(keras.layers.Layer):
    """y = activation(x @ w + b), with weights created in `build` from the input's last dimension."""

    def __init__(self, units: int = 32, activation: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: tuple) -> None:
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

    def call(self, inputs: Any) -> Any:
        return self.activation(keras.ops.matmul(inputs, self.w) + self.b)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MySequential(keras.Model):
    """A subclassed model: SimpleDense layers applied in order."""

    def __init__(self, hidden: int = 64, classes: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units, self.classes = hidden, classes
        self.hidden = SimpleDense(hidden, activation="relu", name="hidden")
        self.out = SimpleDense(classes, activation="softmax", name="predictions")

    def build(self, input_shape: tuple) -> None:
        self.hidden.build(input_shape)
        self.out.build((*input_shape[:-1], self.hidden_units))

    def call(self, inputs: Any) -> Any:
        return self.out(self.hidden(inputs))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden": self.hidden_units, "classes": self.classes}


def make_model(input_dim: int = 64, hidden: int = 64, classes: int = 10) -> keras.Model:
    """The factory: a built MySequential (built so its weights exist before compile and saving)."""
    model = MySequential(hidden, classes, name="my_sequential")
    model.build((None, input_dim))
    return model
