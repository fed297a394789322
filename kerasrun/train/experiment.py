"""`prepare_experiment(config)`: device, data, the compiled model, init_from weights, checked callbacks and the trainer — before any run folder exists."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasrun._tf import keras
from kerasrun.build import registry
from kerasrun.build.adapt import adapt_layers
from kerasrun.build.checks import (
    activation_notes,
    check_batch_targets,
    check_data_names,
    check_declared_names,
    check_first_batch,
    check_first_batch_metrics,
    check_input_shape,
    check_targets,
    first_training_batch,
    width_notes,
)
from kerasrun.build.init_from import load_initial_weights
from kerasrun.build.model import build_model, compile_model, input_names, output_names
from kerasrun.config.schema import Config
from kerasrun.data import Data, Split, Stream, input_sample_shape, load_data, name_lists
from kerasrun.errors import Collector, ConfigError
from kerasrun.integrations import missing_packages
from kerasrun.integrations.mlflow_tracking import MlflowTracker, open_tracker
from kerasrun.train.callbacks.records import check_callbacks, check_monitors
from kerasrun.train.checkpoint import CallbackStates
from kerasrun.train.devices import Placement, select_placement
from kerasrun.train.memory import address_space_warning
from kerasrun.train.trainers.base import Trainer
from kerasrun.train.trainers.select import make_trainer


@dataclass
class Experiment:
    """A config whose model, data and callbacks were all built and checked: ready to train."""

    config: Config
    model: Any
    data: Data
    placement: Placement
    trainer: Trainer  # fit or the compiled custom loop (already traced)
    timings: dict[str, float] = field(default_factory=dict)
    init_from: dict[str, Any] | None = None  # what model.init_from loaded, for run.json
    tracker: MlflowTracker | None = None  # output.mlflow: the store, opened before the folder exists
    notes: list[str] = field(default_factory=list)  # warnings for the start of the run: callback state a checkpoint cannot hold
    memory_warning: str | None = None  # `ulimit -v` below what the run will likely reserve (train.memory)


def prepare_experiment(config: Config, runs_dir: Path | None = None, initial_weights: bool = True) -> Experiment:
    """Select the device, load data, build and compile the model, load init_from weights, check callbacks — before any folder exists.

    `runs_dir` is where `model.init_from: {run: NAME}` looks (default: output.runs_dir); a resumed
    run skips init_from (`initial_weights=False`): its checkpoint holds the weights.
    """
    if problems := missing_packages(config, deep=True):  # TensorBoard or MLflow asked for but not installed
        raise ConfigError(problems)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)  # before any tf.data shuffle is built: it reads the global seed
    placement = select_placement(config)
    data = load_data(config, placement.peers)
    timings["data_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with placement.scope():  # under a strategy, variables (and adapted state) must be created in its scope
        model = build_model(config, data)  # layers that need it are adapted on the training split as they are wired in
        compile_model(model, config)
    data = name_lists(data, input_names(model), output_names(model))
    collector = Collector()
    shape = input_sample_shape(data.train)
    if shape is not None and (problem := check_input_shape(model, shape, config)):
        collector.add(problem)
    # Names the config declares wrongly are reported at their keys; the arrays' names only when the config declares none wrongly.
    names = check_declared_names(model, config) or check_data_names(model, data, config)
    for problem in [*names, *check_targets(model, data, config)]:
        collector.add(problem)
    user_callbacks = check_user_callbacks(model, config, collector)
    notes = CallbackStates(user_callbacks).notes()
    if config.runtime.logical_cpus is not None and config.runtime.strategy != "mirrored":
        notes.append(f"runtime.logical_cpus changes nothing with strategy: {config.runtime.strategy} (only mirrored replicates over them)")
    collector.raise_if_any()
    data.notes.extend([*activation_notes(model, config), *width_notes(model, data, config)])
    if config.model.factory is not None:  # a factory built its layers itself: they learn from the training split now
        with placement.scope():
            data.notes.extend(adapt_layers(model, data, config))
    batch = first_training_batch(model, data.train, config)  # read once: a streamed source's batch is decoded from its files
    if isinstance(data.train, Stream) and data.train.labels is None and batch and (problems := check_batch_targets(model, batch, config)):
        raise ConfigError(problems)  # targets that are not classes are not in memory: checked on the batch
    if (problem := check_first_batch(model, data, config, batch) or check_first_batch_metrics(model, data, config, batch)) is not None:
        raise ConfigError(problem)
    if metrics_built(model, data, config) and (problems := check_monitors(model, user_callbacks, data.validation is not None, config)):
        raise ConfigError(problems)
    init_report = None
    if config.model.init_from is not None and initial_weights:
        with placement.scope():
            init_report = load_initial_weights(model, config, runs_dir)
    trainer = make_trainer(config, model, data, placement)
    tracker = open_tracker(config, placement.is_chief)  # last: the config is good
    timings["build_s"] = time.perf_counter() - start
    # Last, so that the address space measured holds the data, the model and the traced custom loop.
    memory = address_space_warning(placement.replicas)
    return Experiment(config, model, data, placement, trainer, timings, init_report, tracker, notes, memory)


def metrics_built(model: Any, data: Data, config: Config) -> bool:
    """Whether the first-batch checks built every metric Keras will log, so their names are known before training."""
    # check_first_batch_metrics puts an array or streamed batch through them on one device; with a custom step Keras builds what it logs later.
    return isinstance(data.train, (Split, Stream)) and config.runtime.strategy == "none" and config.train.step is None


def build_inspected_model(config: Config) -> Any:
    """The model `validate --build` and `plot-model` show: the training data is read only when a layer must adapt before it is called."""
    return build_model(config, lambda: load_data(config))


def build_checked_model(config: Config) -> Any:
    """`validate --build`: the compiled model, after instantiating and checking the callbacks — what it calls ok, trains."""
    model = build_inspected_model(config)
    compile_model(model, config)
    collector = Collector()
    for problem in check_declared_names(model, config):
        collector.add(problem)
    check_user_callbacks(model, config, collector)
    collector.raise_if_any()
    return model


def check_user_callbacks(model: Any, config: Config, collector: Collector) -> list[Any]:
    """Instantiate train.callbacks and check them against the compiled model; problems go to `collector`, the callbacks back."""
    callbacks = registry.resolve_each(config.train.callbacks, ("train", "callbacks"), registry.resolve_callback, config, collector)
    if len(callbacks) == len(config.train.callbacks):  # all resolved: check them against the compiled model
        for problem in check_callbacks(model, callbacks, config):
            collector.add(problem)
    return callbacks
