"""Which trainer trains a config: `train.loop` names one of LOOPS (a new loop is one more entry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kerasrun.build.model import output_names
from kerasrun.config.schema import Config
from kerasrun.data import Data, make_dataset
from kerasrun.data.feed import make_array_feed
from kerasrun.errors import ConfigError
from kerasrun.imports import SpecError, import_object
from kerasrun.train.devices import Placement
from kerasrun.train.trainers.base import Trainer
from kerasrun.train.trainers.custom import CustomLoop, CustomTrainer, check_step_signature
from kerasrun.train.trainers.fit import FitTrainer


def make_trainer(config: Config, model: Any, data: Data, placement: Placement) -> Trainer:
    """The trainer of the loop `training_loop` picks; it records why when `train.loop: auto` picked it."""
    name, why = training_loop(config, model)
    trainer = LOOPS[name](config, model, data, placement)
    trainer.chosen_because = why
    return trainer


def training_loop(config: Config, model: Any = None) -> tuple[str, str | None]:
    """The loop that trains, and why when it was not simply asked for.

    Keras 3's fit and evaluate fail under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
    multi-worker runs use the custom loop, which computes fit's numbers. `auto` takes the custom
    loop — the same numbers, bit for bit, and faster (bench/README.md) — unless the model needs fit.
    """
    if config.runtime.strategy == "multi_worker":
        return "custom", None if config.train.loop == "custom" else "multi-worker: Keras's fit fails under MultiWorkerMirroredStrategy"
    if config.train.loop != "auto":
        if config.train.loop == "custom" and model is not None and (own := own_steps(model)):
            raise ConfigError(
                config.problem(
                    ("train", "loop"),
                    f"the model's class overrides {' and '.join(own)}, which only Keras's fit runs: the custom loop would silently skip it",
                    "use `loop: fit` (or `auto`)",
                )
            )
        return config.train.loop, None
    if config.train.step is not None:
        return "custom", "auto: train.step runs in the custom loop"
    if model is not None and (own := own_steps(model)):
        return "fit", f"auto: the model's class overrides {' and '.join(own)}, which only fit runs"
    if model is not None and getattr(model, "jit_compile", False):
        return "fit", "auto: the model compiles with XLA (jit_compile), which only fit does"
    return "custom", "auto: the custom loop gives fit's numbers, faster"


def own_steps(model: Any) -> list[str]:
    """The Keras training-step methods the model's class overrides (a subclassed Model with its own train_step)."""
    from kerasrun._tf import keras

    return [name for name in ("train_step", "test_step") if getattr(type(model), name, None) is not getattr(keras.Model, name, None)]


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
        outputs = output_names(model)
        # In memory on one device the run reads an ArrayFeed (CustomTrainer.read_in_graph): trace the chunk it calls.
        feed = make_array_feed(data.train, config.train.batch_size, False, config.seed, outputs) if placement.strategy is None else None
        dataset = make_dataset(data.train, config.train.batch_size, False, config.seed, outputs) if feed is None else None
        try:
            with placement.scope():
                loop.trace(dataset, feed)
        except TypeError as exc:
            # tf.function wraps errors raised while tracing in "in user code: ..."; the last line is the cause.
            cause = str(exc).strip().splitlines()[-1].strip().removeprefix("TypeError: ")
            raise ConfigError(config.problem(loc, cause)) from None
    return loop


LOOPS: dict[str, Callable[[Config, Any, Data, Placement], Trainer]] = {"fit": make_fit_trainer, "custom": make_custom_trainer}
