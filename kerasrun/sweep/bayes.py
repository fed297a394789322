"""`--optuna N`: Bayesian search with Optuna (TPE), pruning bad trials by epoch (the optional extra `sweep`).

Optuna picks each trial's values from the trials before (ask/tell); a Keras callback reports the
metric after every epoch and, when Optuna's pruner says so, stops the run the way an interruption
does: the epoch is recorded and checkpointed, run.json says `pruned`.
"""

from __future__ import annotations

import math
from typing import Any

from kerasrun._tf import keras
from kerasrun.errors import ConfigError, Problem
from kerasrun.sweep.record import Trial
from kerasrun.sweep.search import Report, SweepPlan, run_one
from kerasrun.sweep.space import Dimension, TrialPlan, format_value
from kerasrun.sweep.trial import Pruned, run_trial


def import_optuna() -> Any:
    """Optuna, or a ConfigError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            Problem(
                key="",
                message="--optuna needs the optuna package",
                file="--optuna",
                hint='pip install "kerasrun[sweep]" (or pip install optuna)',
            )
        ) from None
    return optuna


class PruneOnEpoch(keras.callbacks.Callback):
    """Reports the sweep's metric to an Optuna trial after every epoch; raises Pruned when the pruner says so."""

    def __init__(self, trial: Any, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), epoch + 1)
        if self.trial.should_prune():
            raise Pruned(epoch + 1, self.metric, float(value))


def distribution(optuna: Any, dim: Dimension) -> Any:
    """The Optuna distribution of a dimension (choices are kept as their YAML text)."""
    if dim.kind == "choice":
        return optuna.distributions.CategoricalDistribution(dim.values)
    if dim.kind == "int":
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high))
    return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.kind == "loguniform")


def make_study(optuna: Any, plan: SweepPlan) -> Any:
    """A seeded in-memory study with the chosen sampler and pruner."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=plan.seed, n_startup_trials=min(10, max(1, plan.count // 3)))
        if plan.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=plan.seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=plan.prune_startup, n_warmup_steps=plan.prune_warmup)
        if plan.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(direction="minimize" if plan.mode == "min" else "maximize", sampler=sampler, pruner=pruner)


def run_optuna(plan: SweepPlan, record: Any, report: Report) -> None:
    """Ask Optuna for each trial's values, train it in this process, tell Optuna how it went."""
    optuna = import_optuna()
    study = make_study(optuna, plan)
    distributions = {dim.key: distribution(optuna, dim) for dim in plan.dims}
    for index in range(plan.count):
        asked = study.ask(distributions)
        values = {dim.key: asked.params[dim.key] if dim.kind == "choice" else format_value(asked.params[dim.key]) for dim in plan.dims}
        trial_plan = TrialPlan(index, [f"{key}={text}" for key, text in values.items()])
        record.trials.append(Trial(index, trial_plan.overrides, trial_plan.params))
        try:
            outcome = run_one(plan, record, trial_plan, report, run_trial, [PruneOnEpoch(asked, plan.metric)])
        except KeyboardInterrupt:
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
            raise
        value = record.trial(index).metric
        if outcome.status == "pruned":
            study.tell(asked, state=optuna.trial.TrialState.PRUNED)
        elif outcome.status == "completed" and value is not None:
            study.tell(asked, value)
        else:
            study.tell(asked, state=optuna.trial.TrialState.FAIL)
