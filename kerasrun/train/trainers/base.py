"""The one interface both training loops implement: fit epochs, evaluate, and the state a checkpoint holds.

`run.py` talks only to this interface, so checkpointing, resume and the run folder are written once.
A new loop (e.g. gradient accumulation) is a subclass that implements `fit` and `evaluate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from kerasrun.config.schema import Config
from kerasrun.train.devices import Placement


def cap_steps(steps: int | None, dataset: Any) -> int | None:
    """Cap a step count at one pass over a finite dataset (Keras would stop training when the data runs out)."""
    if steps is None or dataset is None:
        return steps
    batches = int(dataset.cardinality())
    return min(steps, batches) if batches > 0 else steps


def evaluate_model(model: Any, dataset: Any, steps: int | None) -> dict[str, float]:
    """Keras's `model.evaluate` as a dict of floats."""
    return {k: float(v) for k, v in model.evaluate(dataset, steps=steps, return_dict=True, verbose=0).items()}


class Trainer(ABC):
    """Trains a compiled Keras model on prepared tf.data pipelines, driving Keras callbacks."""

    name: str
    chosen_because: str | None = None  # why this loop trains, when `train.loop: auto` (or multi-worker) picked it

    def __init__(self, model: Any, config: Config, placement: Placement) -> None:
        self.model = model
        self.config = config
        self.placement = placement

    def read_by_worker(self, steps: int, pipeline: int) -> None:
        """Multi-worker, data sharded by file: each worker's training data is its own share in per-replica batches, `steps` per epoch.

        `pipeline` is the worker's input pipeline id, as tf.distribute will number it. Only a loop
        that trains under MultiWorkerMirroredStrategy implements it.
        """
        raise NotImplementedError(f"the {self.name} loop does not train under multi-worker")

    def one_stream_steps(self, split: Any, batch_size: int) -> int | None:
        """Steps per epoch with which this loop reads the training data as one endless stream, when the config sets none.

        None (the default): every epoch reads a fresh pass, from a fresh iterator, as Keras's fit does.
        """
        return None

    def read_in_graph(self, make_feeds: Callable[[], tuple[Any, Any]]) -> None:
        """Offer the in-memory training (streamed, as one_stream_steps or steps_per_epoch make it) and validation data as ArrayFeeds.

        A loop that can gather its batches inside its compiled call calls `make_feeds` and reads them
        instead of the datasets; fit keeps reading the tf.data pipelines and never makes them.
        """
        return None

    @abstractmethod
    def fit(self, train_ds: Any, val_ds: Any, callbacks: list[Any], initial_epoch: int, start_step: int = 0) -> None:
        """Train epochs `initial_epoch` .. train.epochs - 1, validating after each when `val_ds` is given.

        `start_step` > 0: resume inside `initial_epoch`, whose first `start_step` steps are done (their
        batches are skipped, the metrics' running states are restored by the ResumeMidEpoch callback).
        """

    @abstractmethod
    def evaluate(self, dataset: Any, steps: int | None) -> dict[str, float]:
        """Score the model on `dataset` (at most `steps` batches): loss and compiled metrics by name."""

    def build_state(self, dataset: Any) -> None:
        """Create every variable a checkpoint holds (the model's, the optimizer's) before restoring into them.

        A subclassed model has no weights until it is called: call it once, in inference mode (no
        random state moves), on the first batch of `dataset`.
        """
        model = self.model
        if not model.built:
            x = next(iter(dataset))
            model(x[0] if isinstance(x, tuple) else x, training=False)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)

    def metric_variables(self, names: list[str] | None = None) -> list[Any]:
        """The variables of the epoch's running metric states (a mid-epoch checkpoint holds them): the compiled metrics' and the loss tracker's.

        `names`: the variables a checkpoint holds, for a loop that creates some of them lazily.
        """
        return list(self.model.metrics_variables)

    def state_variables(self) -> dict[str, list[Any]]:
        """The variables that decide what the next epoch computes: weights, seed generator states, optimizer slots."""
        return {"model": list(self.model.variables), "optimizer": list(self.model.optimizer.variables)}
