"""`--optuna N`: the sampler picks each trial's values when a process takes its slot; a pruner stops bad trials by epoch.

A Keras callback reports the metric after every epoch and, when Optuna's pruner says so, stops the run
the way an interruption does: the epoch is recorded and checkpointed, run.json says `pruned`. The
pruner reads every process's reported epochs from the storage, so it judges a trial against all machines'.
"""

from __future__ import annotations

import math
from typing import Any

from kerasrun._tf import keras
from kerasrun.sweep.search import SweepPlan
from kerasrun.sweep.space import Dimension, format_value
from kerasrun.sweep.trial import Pruned


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


def suggest(trial: Any, dim: Dimension) -> str:
    """The trial's value of one dimension as `--set` text (a retried trial gets the value it had)."""
    if dim.kind == "choice":
        return str(trial.suggest_categorical(dim.key, dim.values))  # choices are kept as their YAML text
    if dim.kind == "int":
        return format_value(trial.suggest_int(dim.key, int(dim.low), int(dim.high)))
    return format_value(trial.suggest_float(dim.key, dim.low, dim.high, log=dim.kind == "loguniform"))


def make_sampler(optuna: Any, plan: SweepPlan, seed: int) -> Any:
    """The chosen sampler, seeded for this process (each process of a shared sweep gets its own seed)."""
    if plan.method == "optuna" and plan.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, plan.count // 3)))
    return optuna.samplers.RandomSampler(seed=seed)  # planned trials carry their values: it is never asked


def make_pruner(optuna: Any, plan: SweepPlan) -> Any:
    """The median pruner (planned sweeps and `--pruner none` never prune)."""
    if plan.method != "optuna" or plan.pruner != "median":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=plan.prune_startup, n_warmup_steps=plan.prune_warmup)
