"""Plan a sweep (parse, check every trial's config: no TensorFlow), create its folder, and run its trials."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError, Problem
from kerasrun.sweep import space
from kerasrun.sweep.record import SweepRecord, Trial
from kerasrun.sweep.space import Dimension, TrialPlan

Report = Callable[[SweepRecord, Trial], None]  # called when a trial starts and when it ends


@dataclass
class SweepPlan:
    """A checked sweep: the config, the space and the trials (planned up front, except Optuna's)."""

    config_path: Path
    method: str  # grid | random | optuna
    dims: list[Dimension]
    trials: list[TrialPlan]  # grid and random: all of them; optuna: none (its sampler picks values as trials start)
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
    storage: str | None = None  # --storage: an Optuna storage URL or a journal file (default: a journal file in the sweep folder)
    study_name: str | None = None  # --study-name: also the sweep folder's name, so the same command on N machines shares it
    # The config with --set applied, as it resolved when the sweep was planned: a resumed or joined sweep must resolve to it again.
    resolved: dict[str, Any] | None = None
    mode_auto: bool = False  # the mode was `auto`, decided from the metric (Keras's direction for it)

    def overrides(self, trial: TrialPlan) -> list[str]:
        """What the trial's train applies: --set first, then its own values (which win)."""
        return [*self.base_overrides, *trial.overrides]

    def train_command(self, trial: TrialPlan) -> list[str]:
        """The standalone `kerasrun train` of a trial."""
        return train_command(self.config_path, self.overrides(trial), self.runs_dir)

    def train_commands(self, sweep_dir: Path) -> list[list[str]]:
        """Every trial's `kerasrun train` for a scheduler (`--print-commands`): absolute paths, this interpreter, a trial name.

        Only a planned search (grid, random) has them: Optuna picks each trial's values from the ones before.
        """
        if self.method == "optuna":
            raise ConfigError(
                Problem(
                    key="",
                    file="--print-commands",
                    message="--print-commands needs a planned search (--grid or --random): Optuna picks each trial's values from the ones before",
                    hint="share an Optuna sweep between machines with --storage and --study-name instead",
                )
            )
        config = self.config_path.resolve()
        head = [sys.executable, "-m", "kerasrun", "train", str(config)]
        return [
            [
                *head,
                *(a for item in self.overrides(t) for a in ("--set", item)),
                "--runs-dir",
                str(sweep_dir),
                "--name",
                trial_name(t.index),
            ]
            for t in self.trials
        ]

    def definition(self) -> dict[str, Any]:
        """What the sweep is, as its study stores it: a process joining the study (or resuming it) plans from this."""
        return {
            "config": str(self.config_path.resolve()),
            "method": self.method,
            "metric": self.metric,
            "mode": self.mode,
            "space": [d.describe() for d in self.dims],
            "dims": [asdict(d) for d in self.dims],
            "set": self.base_overrides,
            "planned": self.count,
            "seed": self.seed,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "prune_startup": self.prune_startup,
            "prune_warmup": self.prune_warmup,
            "runs_dir": str(self.runs_dir.resolve()) if self.runs_dir else None,
            "name": self.name,
            "resolved": self.resolved,
        }

    def config_changes(self) -> list[str]:
        """The dotted keys whose values the config (with --set) resolves to now, not as when the sweep was planned ([] when unknown)."""
        if self.resolved is None:  # a sweep made by an older kerasrun recorded no resolved config
            return []
        return differing_keys(self.resolved, load_config(self.config_path, self.base_overrides).model_dump(mode="json"))


def plan_from_definition(definition: dict[str, Any], **settings: Any) -> SweepPlan:
    """The plan of a sweep whose study exists (its planned trials are in the study's queue, not here)."""
    keys = ("metric", "mode", "seed", "sampler", "pruner", "prune_startup", "prune_warmup", "name")
    runs_dir = Path(definition["runs_dir"]) if definition.get("runs_dir") else None
    return SweepPlan(
        Path(definition["config"]),
        definition["method"],
        [Dimension(**d) for d in definition["dims"]],
        [],
        int(definition["planned"]),
        base_overrides=list(definition["set"]),
        runs_dir=runs_dir,
        resolved=definition.get("resolved"),
        **{key: definition[key] for key in keys},
        **settings,
    )


def differing_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys (`model.layers[0].Dense.units`) where two resolved configs differ in what the trials compute.

    Not counted: keys the recorded config lacks (a newer kerasrun's new settings), the run name and the
    output section, and paths (text holding `/`): those may differ between machines and jobs of one sweep
    — `${SLURM_TMPDIR}/data.npz`, `${SCRATCH}/runs` — with the same file.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        keys = [k for k in before if not (not prefix and k in ("name", "output"))]
        return [found for k in keys for found in differing_keys(before[k], after.get(k), f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [found for i, (b, a) in enumerate(zip(before, after, strict=True)) for found in differing_keys(b, a, f"{prefix}[{i}]")]
    if isinstance(before, str) and isinstance(after, str) and "/" in before and "/" in after:
        return []  # a path: where this machine or job has the data
    return [] if before == after else [prefix or "(the whole config)"]


def trial_name(index: int) -> str:
    """A trial's folder (in the sweep folder) and run name: `trial-007`."""
    return f"trial-{index:03d}"


def train_command(config_path: Path, overrides: list[str], runs_dir: Path | None = None) -> list[str]:
    """The `kerasrun train` command line that trains the same as a trial (run.json's `command`; --print-commands)."""
    command = ["kerasrun", "train", str(config_path)]  # as the user would type it again in the same directory
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
    with_base = [TrialPlan(p.index, [*base, *p.overrides]) for p in checked]
    config = space.check_trials(Path(config_path), dims, with_base)
    resolved = load_config(Path(config_path), base).model_dump(mode="json")
    return SweepPlan(Path(config_path), method, dims, plans, count, name=config.name, resolved=resolved, **settings)


def scheduler_folder(plan: SweepPlan, study_name: str | None) -> Path:
    """Where `--print-commands` trials go: `<runs dir>/<study name or config name>-sweep`, absolute (a task may start anywhere)."""
    runs_dir = plan.runs_dir or Path(load_config(plan.config_path, plan.base_overrides).output.runs_dir)
    return (runs_dir / (study_name or f"{plan.name}-sweep")).resolve()  # runs_dir is relative to the current directory
