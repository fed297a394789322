"""The sweep's `--metric`, checked before any trial trains against what a trial's compiled model logs, and `--mode auto`.

The names a trial logs are known once its model is compiled and the first batch went through its
loss and metrics: `prepare_experiment` does that (and checks callback monitors the same way), so the
first trial that prepares is built here once, in the sweep's process, before anything is written.
`auto` decides the direction as Keras's monitoring callbacks do (`MonitorCallback._set_monitor_op`):
a loss goes down; any other metric goes the way its Keras metric object says (`_direction`: accuracy
and AUC up, errors down). A metric whose direction can't be known is refused: `--mode` must say it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError, Problem
from kerasrun.imports import suggest
from kerasrun.sweep import space
from kerasrun.sweep.search import SweepPlan

CHECKED_TRIALS = 3  # trials tried in turn when one fails to prepare (that trial fails in the sweep, with its error, as it would here)


def is_loss(metric: str) -> bool:
    """Whether a history column is a loss (`loss`, `val_loss`, a per-output `val_out_loss`): lower is better."""
    return metric.removeprefix("val_").endswith("loss")


def check_metric(plan: SweepPlan) -> SweepPlan:
    """The plan with its metric checked against the names a trial logs and its mode decided (`auto`); ConfigError (exit 2)."""
    from kerasrun.sweep.trial import reset_process_state
    from kerasrun.train.callbacks.records import logs_unknown_names
    from kerasrun.train.experiment import metrics_built, prepare_experiment

    candidates = plan.trials[:CHECKED_TRIALS] if plan.trials else space.corner_plans(plan.dims)[:CHECKED_TRIALS]
    experiment = None
    failed: Exception | None = None  # the first candidate's error: what every trial will likely say
    for trial in candidates:
        reset_process_state()
        try:
            experiment = prepare_experiment(load_config(plan.config_path, plan.overrides(trial)), plan.runs_dir)
            break
        except Exception as exc:  # that trial fails in the sweep with its own error; another trial's model tells the names
            failed = failed or exc
            continue
    prepared = experiment is not None
    try:
        checkable = experiment is not None and metrics_built(experiment.model, experiment.data, experiment.config)
        if experiment is not None and checkable and not logs_unknown_names(experiment.config):  # a user callback may log the metric
            check_logged(plan.metric, experiment.model, experiment.data.validation is not None)
        if plan.mode != "auto":
            return plan
        mode = "min" if is_loss(plan.metric) else metric_direction(experiment.model, plan.metric) if experiment else None
    finally:
        del experiment
        reset_process_state()  # the first trial starts from a fresh process's state, as every trial does
    if mode is None and not prepared and isinstance(failed, ConfigError):
        raise failed  # no trial could be prepared: its error, not "no direction", is what to fix
    if mode is None:
        raise ConfigError(
            Problem(
                key="",
                file="--metric",
                message=f"can't tell whether `{plan.metric}` is better low or high (Keras knows no direction for it)",
                hint="give --mode max or --mode min",
            )
        )
    return replace(plan, mode=mode, mode_auto=True)


def check_logged(metric: str, model: Any, validation: bool) -> None:
    """The metric must be a column the trials' history.json will have (as check_monitors reads them for callbacks)."""
    logged = [*model.get_metrics_result(), "learning_rate"]  # learning_rate: logged by ReduceLROnPlateau and LearningRateScheduler
    names = [*logged, *(f"val_{name}" for name in logged[:-1] if validation)]
    if metric in names:
        return
    raise ConfigError(unknown_metric(metric, names, "log", "" if validation else " (no validation data: no val_ metrics)"))


def unknown_metric(metric: str, names: list[str], verb: str, note: str = "") -> Problem:
    """`--metric` names no history.json column the trials `verb` (log, logged): the columns, with a did-you-mean."""
    return Problem(
        key="",
        file="--metric",
        message=f"the trials {verb} no metric `{metric}`: their history.json columns are {', '.join(names)}{note}",
        hint=suggest(metric, names) or containing(metric, names) or "give one of those",
    )


def containing(metric: str, names: list[str]) -> str | None:
    """`did you mean …?` for a shortened name (`val_acc`): the logged names of the same split that contain it."""
    short = metric.removeprefix("val_")
    found = [n for n in names if short and short in n.removeprefix("val_") and n.startswith("val_") == metric.startswith("val_")]
    return "did you mean " + " or ".join(f"`{n}`" for n in found[:3]) + "?" if found else None


def metric_direction(model: Any, metric: str) -> str | None:
    """`max` or `min` as Keras's `mode="auto"` decides it for this compiled model's metric, or None when Keras can't tell."""
    from kerasrun._tf import keras
    from kerasrun.build.model import output_names
    from kerasrun.keras_private import monitor_direction_problem

    bare = metric.removeprefix("val_")
    # Keras finds a metric by its own name: a multi-output model logs `cls_accuracy` for output `cls`'s `accuracy`.
    names = [metric] + [
        bare.removeprefix(f"{out}_") for out in output_names(model) if bare.startswith(f"{out}_") and len(output_names(model)) > 1
    ]
    for name in names:
        watcher = keras.callbacks.EarlyStopping(monitor=name, mode="auto")  # never trains: only reads the metrics' directions
        if monitor_direction_problem(watcher, model) is None and watcher.monitor_op is not None:
            return "min" if watcher.monitor_op is keras.ops.less else "max"
    return None  # no direction, or a Keras whose private `_set_monitor_op` kerasrun has not read (then --mode is needed)
