"""The seeds' custom Keras objects, importable from configs by path, registered so saved models reload.

Used by configs/digits_custom_objects.yaml and configs/breast_cancer_weighted_bce.yaml:
- `custom_mean_squared_error`: a plain `(y_true, y_pred)` loss function;
- `WeightedBinaryCrossEntropy(pos_weight, weight, from_logits)`: a Loss subclass with parameters;
- `CategoricalTruePositives`: a Metric subclass with its own state;
- `ActivityRegularizationLayer(rate)`: a layer that calls `add_loss`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "kerasrun_examples"


@keras.saving.register_keras_serializable(package=PACKAGE)
def custom_mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error written by hand, as in the seed."""
    return ops.mean(ops.square(ops.cast(y_true, y_pred.dtype) - y_pred), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedBinaryCrossEntropy(keras.losses.Loss):
    """Binary cross-entropy with a weight on the positive class and an overall weight."""

    def __init__(
        self,
        pos_weight: float = 1.0,
        weight: float = 1.0,
        from_logits: bool = False,
        reduction: str = "sum_over_batch_size",
        name: str = "weighted_binary_crossentropy",
    ) -> None:
        super().__init__(reduction=reduction, name=name)
        self.pos_weight = pos_weight
        self.weight = weight
        self.from_logits = from_logits

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(ops.reshape(y_true, (-1, 1)), y_pred.dtype)
        ce = keras.losses.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)[:, None]
        return self.weight * (ce * (1 - y_true) + self.pos_weight * ce * y_true)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pos_weight": self.pos_weight, "weight": self.weight, "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalTruePositives(keras.metrics.Metric):
    """How many samples were classified correctly (a running count, not a rate)."""

    def __init__(self, name: str = "categorical_true_positives", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        predicted = ops.argmax(y_pred, axis=-1)
        # Sparse labels or one-hot targets both become class indices.
        labels = (
            ops.argmax(y_true, axis=-1)
            if len(y_true.shape) > 1 and y_true.shape[-1] and y_true.shape[-1] > 1
            else ops.reshape(y_true, (-1,))
        )
        values = ops.cast(ops.equal(ops.cast(labels, "int32"), ops.cast(predicted, "int32")), "float32")
        if sample_weight is not None:
            values = values * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        self.true_positives.assign_add(ops.sum(values))

    def result(self) -> Any:
        # A read, not the variable itself: logs keep what they are given, and the variable moves on.
        return ops.copy(self.true_positives)

    def reset_state(self) -> None:
        self.true_positives.assign(0.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ActivityRegularizationLayer(keras.layers.Layer):
    """Adds `rate * sum(inputs)` to the model's losses, as in the seed, and passes its input through."""

    def __init__(self, rate: float = 1e-2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs: Any) -> Any:
        self.add_loss(self.rate * ops.sum(inputs))
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}
