"""sweep.json: the space, every trial (overrides, status, run folder, metric), ranked; a view of the study, rewritten atomically.

The study in its storage is the truth (several processes on several machines add to it); any of
them rewrites sweep.json from it after each trial, and `kerasrun runs` reads it without Optuna.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kerasrun.rundir.io import write_json_atomic
from kerasrun.rundir.layout import SWEEP_FILE
from kerasrun.rundir.record import now_iso

# A trial's status is its run folder's (completed, failed, diverged, interrupted, pruned), or one of these.
PENDING, RUNNING = "pending", "running"


@dataclass
class Trial:
    """One trial's record."""

    index: int
    overrides: list[str]
    params: dict[str, Any]
    status: str = PENDING
    run_dir: str | None = None  # relative to the sweep folder
    metric: float | None = None  # the best value of the sweep's metric over the trial's epochs
    best_epoch: int | None = None
    epochs: int | None = None
    test_metrics: dict[str, float] | None = None
    error: str | None = None
    seconds: float | None = None
    rank: int | None = None  # 1 = best; only completed trials with a metric value are ranked
    attempts: list[int] = field(default_factory=list)  # the Optuna trial numbers that trained it (more than one: resumed)


@dataclass
class SweepRecord:
    """The whole sweep, as sweep.json holds it."""

    path: Path  # the sweep folder
    config: str
    method: str  # grid | random | optuna
    metric: str
    mode: str  # min | max
    space: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)  # seed, jobs, sampler, pruner, command
    trials: list[Trial] = field(default_factory=list)
    status: str = RUNNING
    started: str = field(default_factory=now_iso)
    ended: str | None = None

    def trial(self, index: int) -> Trial:
        """The trial numbered `index`."""
        return next(t for t in self.trials if t.index == index)

    def rank(self) -> None:
        """Number the completed trials that have a metric value, best first (ties keep trial order).

        A pruned, failed or interrupted trial keeps the value it reached, unranked: it did not finish.
        """
        scored = [t for t in self.trials if t.metric is not None and t.status == "completed"]
        scored.sort(key=lambda t: (t.metric if self.mode == "min" else -t.metric, t.index))  # type: ignore[operator]
        for trial in self.trials:
            trial.rank = None
        for position, trial in enumerate(scored, start=1):
            trial.rank = position

    def best(self) -> Trial | None:
        """The best-ranked trial, if any trial has a metric value."""
        self.rank()
        return next((t for t in self.trials if t.rank == 1), None)

    def as_dict(self) -> dict[str, Any]:
        """sweep.json's content: the trials in rank order (unranked ones after, by number)."""
        self.rank()
        trials = sorted(self.trials, key=lambda t: (t.rank is None, t.rank or 0, t.index))
        best = trials[0] if trials and trials[0].rank == 1 else None
        return {
            "config": self.config,
            "method": self.method,
            "metric": self.metric,
            "mode": self.mode,
            "status": self.status,
            "started": self.started,
            "ended": self.ended,
            "space": self.space,
            **self.settings,
            "best": {"index": best.index, "run_dir": best.run_dir, "metric": best.metric, "params": best.params} if best else None,
            "trials": [asdict(t) for t in trials],
        }

    def save(self) -> None:
        """Write sweep.json atomically."""
        write_json_atomic(self.path / SWEEP_FILE, self.as_dict())


# How a finished Optuna trial counts when kerasrun wrote no status into it (it died before).
OPTUNA_STATUS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "WAITING": PENDING, "RUNNING": RUNNING}


def trials_of(frozen: list[Any]) -> list[Trial]:
    """One Trial per slot (a trial folder) from the study's trials: the newest attempt says how it stands."""
    by_slot: dict[int, list[Any]] = {}
    for attempt in sorted(frozen, key=lambda t: t.number):
        slot = attempt.user_attrs.get("slot")
        if isinstance(slot, int):
            by_slot.setdefault(slot, []).append(attempt)
    trials = []
    for slot, attempts in sorted(by_slot.items()):
        newest = attempts[-1]
        attrs = newest.user_attrs
        state = OPTUNA_STATUS.get(newest.state.name, "failed")
        status = state if state in (PENDING, RUNNING) else str(attrs.get("status") or state)
        if state == PENDING and len(attempts) > 1:  # enqueued again: it stands as its last attempt left it (and resumes from there)
            status = str(attrs.get("status") or PENDING)
        overrides = [str(o) for o in attrs.get("overrides") or []]
        trial = Trial(slot, overrides, params_of(overrides), status=status, attempts=[a.number for a in attempts])
        for name in ("run_dir", "metric", "best_epoch", "epochs", "test_metrics", "error", "seconds"):
            if name in attrs:
                setattr(trial, name, attrs[name])
        trials.append(trial)
    return trials


def params_of(overrides: list[str]) -> dict[str, Any]:
    """The overridden values, parsed as YAML (as the trial's train reads them)."""
    from kerasrun.sweep.space import TrialPlan

    return TrialPlan(0, overrides).params
