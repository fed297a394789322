"""Training with Keras's own `model.fit`."""

from __future__ import annotations

from typing import Any

from kerasrun.config import TrainConfig


def train_with_fit(model: Any, train_ds: Any, val_ds: Any, spec: TrainConfig, callbacks: list[Any]) -> None:
    """Run `model.fit` on prepared tf.data pipelines; progress and history come from the callbacks."""
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=spec.epochs,
        initial_epoch=spec.initial_epoch,
        steps_per_epoch=spec.steps_per_epoch,
        validation_steps=spec.validation_steps if val_ds is not None else None,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline already reshuffles every epoch with the seed
        verbose=0,
    )
