"""Training with Keras's own `model.fit`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kerasrun._tf import keras
from kerasrun.train.trainers.base import Trainer, cap_steps, evaluate_model


class FitTrainer(Trainer):
    """`train.loop: fit`: Keras's model.fit and model.evaluate."""

    name = "fit"

    def fit(self, train_ds: Any, val_ds: Any, callbacks: list[Any], initial_epoch: int, start_step: int = 0) -> None:
        """Run `model.fit` on prepared tf.data pipelines; progress and history come from the callbacks.

        Resumed inside an epoch, training is two fit calls that the callbacks see as one run: the
        epoch's remaining steps (its batches from `start_step` on), then the epochs after it.
        """
        spec = self.config.train
        steps = cap_steps(spec.steps_per_epoch, train_ds)
        if start_step == 0:
            self.run_fit(train_ds, val_ds, callbacks, initial_epoch, spec.epochs, steps)
            return
        batches = steps or (cardinality if (cardinality := int(train_ds.cardinality())) > 0 else None)
        rest = batches - start_step if batches is not None else None
        # The callbacks see the whole epoch's steps and batch numbers from `start_step` on, as in the custom loop.
        run = OneTrainingRun(callbacks, add_history=True, add_progbar=False, verbose=0, epochs=spec.epochs, steps=batches, model=self.model)
        run.offset = start_step
        with final_values_held(self.model.optimizer):  # fit finalizes (EMA) at its end: only the run's end may
            self.run_fit(train_ds.skip(start_step), val_ds, run, initial_epoch, initial_epoch + 1, rest if steps else None)
        run.offset = 0
        run.ending = True
        if self.model.stop_training or initial_epoch + 1 >= spec.epochs:
            self.model.optimizer.finalize_variable_values(self.model.trainable_weights)
            run.on_train_end(run.held_logs)
            return
        self.run_fit(train_ds, val_ds, run, initial_epoch + 1, spec.epochs, steps)

    def run_fit(self, train_ds: Any, val_ds: Any, callbacks: Any, initial_epoch: int, epochs: int, steps: int | None) -> None:
        """One `model.fit` call over epochs `initial_epoch` .. `epochs` - 1."""
        self.model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_steps=cap_steps(self.config.train.validation_steps, val_ds),
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline already reshuffles every epoch with the seed
            verbose=0,
        )

    def evaluate(self, dataset: Any, steps: int | None) -> dict[str, float]:
        """`model.evaluate`, as a dict of floats."""
        return evaluate_model(self.model, dataset, steps)


class OneTrainingRun(keras.callbacks.CallbackList):
    """The callbacks of one training run made of two fit calls: they see one on_train_begin and one on_train_end.

    The first call's on_train_end is held (its logs kept) until `ending` is set. `offset`: the steps of
    the epoch done before this fit call, which Keras counts from 0 — added to every batch number.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.begun = False
        self.ending = False
        self.held_logs: dict[str, Any] | None = None
        self.offset = 0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_train_batch_begin(self.offset + batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_train_batch_end(self.offset + batch, logs)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self.begun:
            self.begun = True
            super().on_train_begin(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.ending:
            super().on_train_end(logs)
        else:
            self.held_logs = logs


@contextmanager
def final_values_held(optimizer: Any) -> Iterator[None]:
    """Within the block, `optimizer.finalize_variable_values` does nothing (with use_ema it would swap in the averages)."""
    optimizer.finalize_variable_values = lambda var_list: None  # shadows the method on this instance only
    try:
        yield
    finally:
        del optimizer.finalize_variable_values
