"""Training with Keras's own `model.fit`."""

from __future__ import annotations

from typing import Any

from kerasrun.train.trainers.base import Trainer, cap_steps, evaluate_model


class FitTrainer(Trainer):
    """`train.loop: fit`: Keras's model.fit and model.evaluate."""

    name = "fit"

    def fit(self, train_ds: Any, val_ds: Any, callbacks: list[Any], initial_epoch: int) -> None:
        """Run `model.fit` on prepared tf.data pipelines; progress and history come from the callbacks."""
        spec = self.config.train
        self.model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=spec.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=cap_steps(spec.steps_per_epoch, train_ds),
            validation_steps=cap_steps(spec.validation_steps, val_ds),
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline already reshuffles every epoch with the seed
            verbose=0,
        )

    def evaluate(self, dataset: Any, steps: int | None) -> dict[str, float]:
        """`model.evaluate`, as a dict of floats."""
        return evaluate_model(self.model, dataset, steps)
