"""Layers kerasrun adds to a model graph. Registered so a saved model.keras reloads in safe mode."""

from __future__ import annotations

from typing import Any

from kerasrun._tf import keras

# Statistics of a layer's output, each reduced to one number per batch.
STATISTICS = {
    "mean": lambda x: keras.ops.mean(x),
    "std": lambda x: keras.ops.std(x),
    "min": lambda x: keras.ops.min(x),
    "max": lambda x: keras.ops.max(x),
    "zero_fraction": lambda x: keras.ops.mean(keras.ops.cast(keras.ops.equal(x, 0), "float32")),
    "mean_abs": lambda x: keras.ops.mean(keras.ops.abs(x)),
}


@keras.saving.register_keras_serializable(package="kerasrun")
class ActivationStatistic(keras.layers.Layer):
    """Passes its input through unchanged and tracks a statistic of it as a metric, averaged over batches.

    Keras 3 removed `Layer.add_metric`; a metric owned by a layer is its replacement: Keras reports every
    sublayer metric beside the compiled ones (`model.metrics`), in fit, evaluate and kerasrun's custom loop.
    """

    def __init__(self, statistic: str, metric_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.statistic = statistic
        self.metric_name = metric_name
        self.tracker = keras.metrics.Mean(name=metric_name)

    def call(self, inputs: Any) -> Any:
        self.tracker.update_state(keras.ops.cast(STATISTICS[self.statistic](inputs), "float32"))
        return inputs

    def compute_output_spec(self, inputs: Any) -> Any:
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "statistic": self.statistic, "metric_name": self.metric_name}
