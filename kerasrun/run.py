"""run_experiment(config, run_dir): the whole pipeline from a validated config to a finished run folder."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasrun import registry
from kerasrun._tf import keras, tf
from kerasrun.callbacks import DivergenceGuard, HistoryWriter
from kerasrun.config import Config, config_to_yaml
from kerasrun.data import Data, input_sample_shape, load_data, make_dataset, name_lists
from kerasrun.devices import Placement, select_placement
from kerasrun.errors import Collector, ConfigError, DivergedError, RunFailedError
from kerasrun.models import (
    build_model,
    build_training_state,
    check_data_names,
    check_input_shape,
    compile_model,
    input_names,
    output_names,
    summarize,
)
from kerasrun.progress import make_progress
from kerasrun.rundir import RunRecord, write_json_atomic, write_text_atomic
from kerasrun.trainers.custom import CustomLoop, check_step_signature
from kerasrun.trainers.fit import cap_steps, train_with_fit


@dataclass
class Experiment:
    """A config whose model, data and callbacks were all built and checked: ready to train."""

    config: Config
    model: Any
    data: Data
    placement: Placement
    loop: CustomLoop | None = None  # the compiled custom loop, already traced, when train.loop is custom
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    status: str
    history: dict[str, list[Any]]
    metrics: dict[str, float] | None


def prepare_experiment(config: Config) -> Experiment:
    """Select the device, load data, build and compile the model, check callbacks — before any folder exists."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    placement = select_placement(config)
    data = load_data(config)
    timings["data_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with placement.scope():  # under a strategy, variables must be created in its scope
        model = build_model(config)
        compile_model(model, config)
    data = name_lists(data, input_names(model), output_names(model))
    collector = Collector()
    shape = input_sample_shape(data.train)
    if shape is not None and (problem := check_input_shape(model, shape, config)):
        collector.add(problem)
    for problem in check_data_names(model, data, config):
        collector.add(problem)
    registry.resolve_each(config.train.callbacks, ("train", "callbacks"), registry.resolve_callback, config, collector)
    collector.raise_if_any()
    loop = make_custom_loop(config, model, data, placement) if training_loop(config) == "custom" else None
    timings["build_s"] = time.perf_counter() - start
    return Experiment(config, model, data, placement, loop, timings)


def training_loop(config: Config) -> str:
    """The loop that trains: Keras 3's fit and evaluate fail under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), so multi-worker runs use the custom loop, which computes fit's numbers."""
    return "custom" if config.runtime.strategy == "multi_worker" else config.train.loop


def make_custom_loop(config: Config, model: Any, data: Data, placement: Placement) -> CustomLoop:
    """The custom loop, with the user's step imported, checked and traced (not run) on the training data."""
    step = None
    loc = ("train", "step")
    if config.train.step is not None:
        try:
            step = registry.import_object(config.train.step)
        except registry.SpecError as exc:
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


def run_experiment(experiment: Experiment, run_dir: Path, progress: str = "auto", command: list[str] | None = None) -> RunResult:
    """Train, save and evaluate into `run_dir`; the folder records failure, interruption or divergence too."""
    config, model, data = experiment.config, experiment.model, experiment.data
    run_dir = Path(run_dir)
    record = RunRecord.start(
        run_dir,
        seed=config.seed,
        device=experiment.placement.device,
        command=command,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        placement=experiment.placement.describe(),
        deterministic=config.runtime.deterministic,
        precision=config.runtime.precision,
        loop=training_loop(config),
    )
    write_text_atomic(run_dir / "config.yaml", config_to_yaml(config, data.data_dir))
    write_text_atomic(run_dir / "summary.txt", summarize(model))
    history = HistoryWriter(run_dir / "history.json")
    guard = DivergenceGuard()
    timings = dict(experiment.timings)
    try:
        callbacks = [registry.resolve_callback(spec, run_dir) for spec in config.train.callbacks]
        callbacks += [guard, history]
        if (bar := make_progress(progress)) is not None:
            callbacks.append(bar)
        batch = config.train.batch_size
        start = time.perf_counter()  # fit_s includes building the input pipelines, as fit's own array conversion does
        train_ds = make_dataset(data.train, batch, config.train.shuffle, config.seed, output_names(model))
        val_ds = make_dataset(data.validation, batch, False, config.seed) if data.validation is not None else None
        with experiment.placement.scope():
            build_training_state(model, train_ds)
            if experiment.loop is not None:
                steps = cap_steps(config.train.steps_per_epoch, train_ds)
                experiment.loop.fit(train_ds, val_ds, config.train, callbacks, steps, cap_steps(config.train.validation_steps, val_ds))
            else:
                train_with_fit(model, train_ds, val_ds, config.train, callbacks)
        timings["fit_s"] = time.perf_counter() - start
        if guard.diverged_at is not None:
            record.finish("diverged", diverged_at=guard.diverged_at, timings=timings, epochs_completed=len(history.history["epoch"]))
            raise DivergedError(
                f"the loss became NaN or inf at epoch {guard.diverged_at['epoch']}; history.json keeps the finite epochs ({run_dir})"
            )
        if config.output.save_model:
            save_model_atomic(model, run_dir / "model.keras")
        start = time.perf_counter()
        metrics = evaluate_and_predict(model, data, config, run_dir, experiment.loop)
        timings["evaluate_s"] = time.perf_counter() - start
    except KeyboardInterrupt:
        record.finish("interrupted", timings=timings, epochs_completed=len(history.history["epoch"]))
        raise
    except (DivergedError, ConfigError):
        raise
    except Exception as exc:
        record.finish("failed", error=f"{type(exc).__name__}: {exc}", timings=timings, epochs_completed=len(history.history["epoch"]))
        raise RunFailedError(f"training failed: {type(exc).__name__}: {exc} (run folder {run_dir} is marked failed)") from exc
    record.finish("completed", timings=timings, epochs_completed=len(history.history["epoch"]), metrics=metrics)
    return RunResult(run_dir, "completed", history.history, metrics)


def save_model_atomic(model: Any, path: Path) -> None:
    """Save `model.keras` under a temporary name first, so a crash never leaves half a model."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate_and_predict(model: Any, data: Data, config: Config, run_dir: Path, loop: CustomLoop | None = None) -> dict[str, float] | None:
    """Score the test split into metrics.json and save a few predictions, when there is test data."""
    if data.test is None:
        return None
    batch = config.evaluate.batch_size or config.train.batch_size
    test_ds = make_dataset(data.test, batch, False, config.seed)
    if loop is not None and config.runtime.strategy == "multi_worker":
        metrics = loop.evaluate(test_ds, config.evaluate.steps, keras.callbacks.CallbackList([], model=model))
    else:
        metrics = {k: float(v) for k, v in model.evaluate(test_ds, steps=config.evaluate.steps, return_dict=True, verbose=0).items()}
    write_json_atomic(run_dir / "metrics.json", metrics)
    if config.evaluate.predict_samples and hasattr(data.test, "x"):
        first = data.test.take(slice(0, config.evaluate.predict_samples))
        write_json_atomic(run_dir / "predictions.json", {"targets": first.y, "predictions": model.predict(first.x, verbose=0)})
    return metrics
