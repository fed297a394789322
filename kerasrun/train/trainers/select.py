"""Which trainer trains a config: `train.loop` names one of LOOPS (a new loop is one more entry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kerasrun.build.model import output_names
from kerasrun.config.schema import Config
from kerasrun.data import Data, make_dataset
from kerasrun.errors import ConfigError
from kerasrun.imports import SpecError, import_object
from kerasrun.train.devices import Placement
from kerasrun.train.trainers.base import Trainer
from kerasrun.train.trainers.custom import CustomLoop, CustomTrainer, check_step_signature
from kerasrun.train.trainers.fit import FitTrainer


def make_trainer(config: Config, model: Any, data: Data, placement: Placement) -> Trainer:
    """The trainer for `train.loop` (the custom loop under multi-worker, where Keras's fit fails)."""
    return LOOPS[training_loop(config)](config, model, data, placement)


def training_loop(config: Config) -> str:
    """The loop that trains: Keras 3's fit and evaluate fail under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), so multi-worker runs use the custom loop, which computes fit's numbers."""
    return "custom" if config.runtime.strategy == "multi_worker" else config.train.loop


def make_fit_trainer(config: Config, model: Any, data: Data, placement: Placement) -> Trainer:
    """`loop: fit`: Keras's own fit and evaluate."""
    return FitTrainer(model, config, placement)


def make_custom_trainer(config: Config, model: Any, data: Data, placement: Placement) -> Trainer:
    """`loop: custom`: the compiled GradientTape loop, with the user's `train.step` if any."""
    return CustomTrainer(model, config, placement, make_custom_loop(config, model, data, placement))


def make_custom_loop(config: Config, model: Any, data: Data, placement: Placement) -> CustomLoop:
    """The custom loop, with the user's step imported, checked and traced (not run) on the training data."""
    step = None
    loc = ("train", "step")
    if config.train.step is not None:
        try:
            step = import_object(config.train.step)
        except SpecError as exc:
            raise ConfigError(config.problem(loc, str(exc), exc.hint)) from None
        if (problem := check_step_signature(step)) is not None:
            raise ConfigError(config.problem(loc, problem))
    with placement.scope():  # the loop's own trackers are variables too
        loop = CustomLoop(model, model.steps_per_execution, step, placement.strategy)
    if step is not None:
        dataset = make_dataset(data.train, config.train.batch_size, False, config.seed, output_names(model))
        try:
            with placement.scope():
                loop.trace(dataset)
        except TypeError as exc:
            # tf.function wraps errors raised while tracing in "in user code: ..."; the last line is the cause.
            cause = str(exc).strip().splitlines()[-1].strip().removeprefix("TypeError: ")
            raise ConfigError(config.problem(loc, cause)) from None
    return loop


LOOPS: dict[str, Callable[[Config, Any, Data, Placement], Trainer]] = {"fit": make_fit_trainer, "custom": make_custom_trainer}
