"""Training with Keras's own `model.fit`."""

from __future__ import annotations

from typing import Any

from kerasrun.config import TrainConfig


def cap_steps(steps: int | None, dataset: Any) -> int | None:
    """Cap a step count at one pass over a finite dataset (Keras would stop training when the data runs out)."""
    if steps is None or dataset is None:
        return steps
    batches = int(dataset.cardinality())
    return min(steps, batches) if batches > 0 else steps


def train_with_fit(model: Any, train_ds: Any, val_ds: Any, spec: TrainConfig, callbacks: list[Any]) -> None:
    """Run `model.fit` on prepared tf.data pipelines; progress and history come from the callbacks."""
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=spec.epochs,
        initial_epoch=spec.initial_epoch,
        steps_per_epoch=cap_steps(spec.steps_per_epoch, train_ds),
        validation_steps=cap_steps(spec.validation_steps, val_ds),
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline already reshuffles every epoch with the seed
        verbose=0,
    )
