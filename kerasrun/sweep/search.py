"""Plan a sweep (parse, check every trial's config: no TensorFlow), create its folder, and run its trials."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, Problem
from kerasrun.optional import is_installed
from kerasrun.rundir.files import best_epoch
from kerasrun.rundir.record import create_run_dir
from kerasrun.sweep import space
from kerasrun.sweep.record import RUNNING, SweepRecord, Trial
from kerasrun.sweep.space import Dimension, TrialPlan
from kerasrun.train.signals import on_forced_exit

Report = Callable[[SweepRecord, Trial], None]  # called when a trial starts and when it ends


@dataclass
class SweepPlan:
    """A checked sweep: the config, the space and the trials (planned up front, except Optuna's)."""

    config_path: Path
    method: str  # grid | random | optuna
    dims: list[Dimension]
    trials: list[TrialPlan]  # grid and random: all of them; optuna: none (it picks values as it goes)
    count: int  # how many trials
    metric: str = "val_loss"
    mode: str = "min"
    base_overrides: list[str] = field(default_factory=list)  # --set: applied to every trial, before its own values
    runs_dir: Path | None = None
    jobs: int = 1
    seed: int = 0
    progress: str = "none"
    sampler: str = "tpe"
    pruner: str = "median"
    prune_startup: int = 2
    prune_warmup: int = 1
    name: str = ""

    def overrides(self, trial: TrialPlan) -> list[str]:
        """What the trial's train applies: --set first, then its own values (which win)."""
        return [*self.base_overrides, *trial.overrides]

    def train_command(self, trial: TrialPlan) -> list[str]:
        """The standalone `kerasrun train` of a trial."""
        return train_command(self.config_path, self.overrides(trial), self.runs_dir)

    def train_commands(self) -> list[list[str]]:
        """Every trial's standalone `kerasrun train` (`--print-commands`); only a planned search (grid, random) has them."""
        if self.method == "optuna":
            raise ConfigError(
                "--print-commands needs a planned search (--grid or --random): Optuna picks each trial's values from the ones before",
                file="--print-commands",
            )
        return [self.train_command(trial) for trial in self.trials]


def train_command(config_path: Path, overrides: list[str], runs_dir: Path | None = None) -> list[str]:
    """The `kerasrun train` command line that trains the same as a trial (run.json's `command`; --print-commands)."""
    command = ["kerasrun", "train", str(config_path)]
    for item in overrides:
        command += ["--set", item]
    if runs_dir is not None:
        command += ["--runs-dir", str(runs_dir)]
    return command


def plan_sweep(
    config_path: Path,
    grid: list[str],
    random_count: int | None,
    optuna_count: int | None,
    space_items: list[str],
    **settings: Any,
) -> SweepPlan:
    """Parse the space and check every trial's config up front (all problems at once); raise ConfigError."""
    methods = [
        name
        for name, given in (("--grid", bool(grid)), ("--random", random_count is not None), ("--optuna", optuna_count is not None))
        if given
    ]
    if len(methods) != 1:
        message = "give one search: --grid key=v1,v2,…, --random N --space key=DIST, or --optuna N --space key=DIST"
        raise ConfigError(
            Problem(key="", message=message if not methods else f"{' and '.join(methods)} can't be combined: {message}", file="sweep")
        )
    if grid and space_items:
        raise ConfigError(
            Problem(key="", message="--space goes with --random or --optuna; a grid lists its values in --grid", file="sweep")
        )
    if not grid and not space_items:
        raise ConfigError(
            Problem(key="", message=f"{methods[0]} needs at least one --space key=DIST ({space.DISTRIBUTIONS})", file="sweep")
        )
    base = list(settings.get("base_overrides") or [])
    if grid:
        dims = space.parse_grid(grid)
        plans = space.plan_grid(dims)
        method, count, checked = "grid", len(plans), plans
    elif random_count is not None:
        dims = space.parse_space(space_items)
        plans = space.plan_random(dims, random_count, int(settings.get("seed", 0)))
        method, count, checked = "random", len(plans), plans
    else:
        assert optuna_count is not None  # one search was given (checked above)
        if optuna_count < 1:
            raise ConfigError(Problem(key="", message=f"--optuna takes at least 1 trial, got {optuna_count}", file="--optuna"))
        dims = space.parse_space(space_items)
        plans, method, count = [], "optuna", optuna_count
        checked = space.corner_plans(dims)
        if not is_installed("optuna"):
            raise ConfigError(
                Problem(key="", message="--optuna needs the optuna package", file="--optuna", hint='pip install "kerasrun[sweep]"')
            )
        if int(settings.get("jobs", 1)) > 1:
            raise ConfigError(
                Problem(
                    key="",
                    message="--optuna runs its trials in this process (each picks values from the ones before): --jobs can't be used with it",
                    file="--jobs",
                )
            )
    with_base = [TrialPlan(p.index, [*base, *p.overrides]) for p in checked]
    config = space.check_trials(Path(config_path), dims, with_base)
    return SweepPlan(Path(config_path), method, dims, plans, count, name=config.name, **settings)


def create_sweep(plan: SweepPlan, command: list[str]) -> SweepRecord:
    """Create the sweep folder (`<runs dir>/<time>-<name>-sweep`) and its first sweep.json."""
    from kerasrun.config.load import load_config

    runs_dir = plan.runs_dir or Path(load_config(plan.config_path, plan.base_overrides).output.runs_dir)
    folder = create_run_dir(runs_dir, f"{plan.name}-sweep")
    settings: dict[str, Any] = {"planned": plan.count, "set": plan.base_overrides, "seed": plan.seed, "jobs": plan.jobs, "command": command}
    if plan.method == "optuna":
        settings.update(sampler=plan.sampler, pruner=plan.pruner, prune_startup=plan.prune_startup, prune_warmup=plan.prune_warmup)
    record = SweepRecord(
        folder, str(plan.config_path.resolve()), plan.method, plan.metric, plan.mode, [d.describe() for d in plan.dims], settings
    )
    record.trials = [Trial(p.index, p.overrides, p.params) for p in plan.trials]
    record.save()
    return record


def trial_dir(record: SweepRecord, index: int) -> Path:
    """Where a trial's run folder goes: inside the sweep folder."""
    return record.path / f"trial-{index:03d}"


def apply_outcome(record: SweepRecord, index: int, outcome: Any) -> Trial:
    """Record a finished trial (status, run folder, best metric value) and rewrite sweep.json."""
    best = best_epoch(outcome.history, record.metric, record.mode)
    epoch, value = best if best is not None else (None, None)
    epochs = outcome.history.get("epoch") or []
    run_dir = Path(outcome.run_dir).name if outcome.run_dir else None
    return record.update(
        index,
        status=outcome.status,
        run_dir=run_dir,
        metric=value,
        best_epoch=epoch,
        epochs=len(epochs),
        test_metrics=outcome.test_metrics,
        error=outcome.error,
        seconds=round(outcome.seconds, 3),
    )


@contextmanager
def finished_on_exit(record: SweepRecord) -> Iterator[None]:
    """sweep.json says `completed`, or `interrupted` when the block is left by a signal (or the watchdog's forced exit)."""

    def mark(signum: int) -> None:
        record.finish("interrupted")

    with on_forced_exit(mark):
        try:
            yield
        except KeyboardInterrupt:
            record.finish("interrupted")
            raise
        except BaseException:
            record.finish("failed")  # e.g. a worker could not be started: sweep.json must not stay `running`
            raise
    record.finish("completed")


def run_sweep(plan: SweepPlan, record: SweepRecord, report: Report) -> SweepRecord:
    """Run every trial (in this process, in --jobs workers, or through Optuna); a signal stops the sweep after recording it."""
    with finished_on_exit(record):
        if plan.method == "optuna":
            from kerasrun.sweep.bayes import run_optuna

            run_optuna(plan, record, report)
        elif plan.jobs > 1:
            from kerasrun.sweep.workers import run_in_workers

            run_in_workers(plan, record, report)
        else:
            run_in_process(plan, record, report)
    return record


def run_in_process(plan: SweepPlan, record: SweepRecord, report: Report) -> None:
    """The trials one after another in this process: TensorFlow is imported once."""
    from kerasrun.sweep.trial import run_trial

    for trial_plan in plan.trials:
        run_one(plan, record, trial_plan, report, run_trial)


def run_one(
    plan: SweepPlan, record: SweepRecord, trial_plan: TrialPlan, report: Report, run_trial: Any, callbacks: list[Any] | None = None
) -> Any:
    """Run one planned trial in this process and record it; re-raise a signal once the trial is recorded."""
    index = trial_plan.index
    report(record, record.update(index, status=RUNNING, run_dir=trial_dir(record, index).name))
    outcome, stop = run_trial(
        plan.config_path,
        plan.overrides(trial_plan),
        trial_dir(record, index),
        plan.runs_dir,
        plan.progress,
        plan.train_command(trial_plan),
        callbacks,
    )
    report(record, apply_outcome(record, index, outcome))
    if stop is not None:
        raise stop
    return outcome
