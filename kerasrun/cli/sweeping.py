"""`kerasrun sweep`: train a config many times with different values and rank the trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kerasrun.cli.options import Mode, Progress, Pruner, Sampler, SetOption
from kerasrun.cli.render import EXIT_FAILED, err_console, json_stdout, reported_errors, silently
from kerasrun.errors import ConfigError, Problem
from kerasrun.train.signals import Interrupted


def sweep(
    config_path: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="Experiment YAML file (not with --resume or --collect).", show_default=False)
    ] = None,
    grid: Annotated[
        list[str] | None, typer.Option("--grid", "-g", help="key=v1,v2,… (values parsed like --set). Repeatable: every combination.")
    ] = None,
    random_count: Annotated[int | None, typer.Option("--random", help="N trials drawn from the --space distributions (seeded).")] = None,
    optuna_count: Annotated[
        int | None, typer.Option("--optuna", help="N trials of Bayesian search with Optuna (TPE), with pruning.")
    ] = None,
    space_items: Annotated[
        list[str] | None,
        typer.Option("--space", help="key=loguniform(a,b) | uniform(a,b) | int(a,b) | choice(v1,v2,…). Repeatable."),
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="The history.json column that ranks trials (its best epoch).")] = "val_loss",
    mode: Annotated[
        Mode, typer.Option("--mode", help="Whether the metric is better low or high; auto: a loss low, other metrics as Keras says.")
    ] = "auto",
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of --random and of Optuna's sampler (in the process that makes the sweep).")
    ] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Local processes working on the sweep, each taking waiting trials.")] = 1,
    set_: SetOption = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where the sweep folder goes (default: output.runs_dir).")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage: a database URL (postgresql://…, sqlite:///…) or a journal file (default: one in the sweep folder).",
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option("--study-name", help="The study's name, also the sweep folder's: the same command on other machines joins it."),
    ] = None,
    resume_dir: Annotated[
        Path | None, typer.Option("--resume", metavar="SWEEP_DIR", help="Continue a sweep: pending trials start, interrupted ones resume.")
    ] = None,
    collect_dir: Annotated[
        Path | None, typer.Option("--collect", metavar="SWEEP_DIR", help="Write sweep.json and the ranking of trials --print-commands ran.")
    ] = None,
    print_commands: Annotated[
        bool,
        typer.Option(
            "--print-commands", help="Print one `python -m kerasrun train … --set …` line per trial and exit (for a Slurm array)."
        ),
    ] = False,
    sampler: Annotated[Sampler, typer.Option("--sampler", help="Optuna's sampler.")] = "tpe",
    pruner: Annotated[
        Pruner, typer.Option("--pruner", help="Optuna's pruner: stops trials whose metric is worse than the median at the same epoch.")
    ] = "median",
    prune_startup: Annotated[int, typer.Option("--prune-startup", min=0, help="Trials that run in full before pruning starts.")] = 2,
    prune_warmup: Annotated[int, typer.Option("--prune-warmup", min=0, help="Epochs a trial trains before it can be pruned.")] = 1,
    progress: Annotated[Progress, typer.Option("--progress", help="Each trial's epoch display (in this process only).")] = "none",
    as_json: Annotated[bool, typer.Option("--json", help="Print only sweep.json's content on stdout (the rest on stderr).")] = False,
) -> None:
    """Train a config many times with different values (grid, random or Optuna) as one Optuna study; rank the trials."""
    import shlex

    from kerasrun.sweep.search import plan_sweep, scheduler_folder

    with reported_errors(silently):  # a stop while every trial's config is being checked: nothing was written yet
        given = [name for name, value in (("CONFIG", config_path), ("--resume", resume_dir), ("--collect", collect_dir)) if value]
        if len(given) != 1:
            raise ConfigError(Problem(key="", file="sweep", message="give one of CONFIG, --resume SWEEP_DIR or --collect SWEEP_DIR"))
        searched = [
            name
            for name, value in (
                ("--grid", grid),
                ("--random", random_count),
                ("--optuna", optuna_count),
                ("--space", space_items),
                ("--set", set_),
            )
            if value not in (None, [])
        ]
        if (resume_dir or collect_dir) and searched:
            raise ConfigError(
                Problem(
                    key="",
                    file="--resume" if resume_dir else "--collect",
                    message=f"{', '.join(searched)} can't be given here: the sweep's own search is used",
                )
            )
        if collect_dir is not None:
            from kerasrun.sweep.collect import collect_sweep

            record = collect_sweep(collect_dir, metric, mode)
            show_summary(record, as_json)
            return
        plan = None
        if config_path is not None:
            plan = plan_sweep(
                config_path,
                list(grid or []),
                random_count,
                optuna_count,
                list(space_items or []),
                metric=metric,
                mode=mode,
                seed=seed,
                jobs=jobs,
                base_overrides=list(set_ or []),
                runs_dir=runs_dir,
                progress="none" if as_json or jobs > 1 else progress,
                sampler=sampler,
                pruner=pruner,
                prune_startup=prune_startup,
                prune_warmup=prune_warmup,
                storage=storage,
                study_name=study_name,
            )
        if print_commands:
            if plan is None:
                raise ConfigError(Problem(key="", file="--print-commands", message="--print-commands plans a new sweep from a CONFIG"))
            commands = plan.train_commands(scheduler_folder(plan, study_name))
        elif plan is not None:
            from kerasrun.sweep.builds import check_builds
            from kerasrun.sweep.metric import check_metric

            check_builds(plan)  # every searched layer/optimizer value built once (TensorFlow), before anything is written
            plan = check_metric(plan)  # builds a trial's model (TensorFlow): the metric's name and direction, before anything is written
    if print_commands:
        for command in commands:
            typer.echo(shlex.join(command))
        return
    from rich.console import Console

    from kerasrun.sweep.summary import trial_line
    from kerasrun.sweep.work import open_sweep, run_sweep, start_sweep
    from kerasrun.train.signals import signals_raise_interrupted

    say = Console(stderr=as_json, highlight=False, soft_wrap=True)  # a long trial line stays one line in a log
    sweep = None

    def recorded(stopped: Interrupted) -> None:
        where = f"; {sweep.path / 'sweep.json'} records the trials that ran" if sweep is not None else ""
        again = f"; continue it with `kerasrun sweep --resume {sweep.path}`" if sweep is not None else ""
        err_console().print(f"interrupted ({stopped.name}){where}{again}", markup=False)

    # With local processes, this process only waits for them (as launch does).
    with reported_errors(recorded), signals_raise_interrupted(force_exit=jobs == 1), json_stdout(as_json):
        if plan is not None:
            sweep, made = start_sweep(plan, ["kerasrun", *sys.argv[1:]], storage, study_name, jobs)
        else:
            assert resume_dir is not None  # one of the three was given (checked above)
            sweep, made = open_sweep(resume_dir, storage, jobs, progress="none" if as_json or jobs > 1 else progress), False
        before = sweep.record()
        done = sum(t.status in ("completed", "failed", "diverged", "pruned") for t in before.trials)
        joined = "" if made else f"; joined its study: {done} of {before.settings['planned']} trials ended before"
        auto = " (auto)" if sweep.plan.mode_auto else ""
        say.print(
            f"sweep folder: {sweep.path}  ({sweep.plan.count} {sweep.plan.method} trial(s), {sweep.plan.metric} {sweep.plan.mode}{auto}{joined})",
            markup=False,
        )
        record = run_sweep(sweep, made, lambda rec, trial: say.print(trial_line(rec, trial), markup=False))
    for note in sweep.notes:
        err_console().print(f"warning: {note}", markup=False)
    show_summary(record, as_json, say)


def show_summary(record: Any, as_json: bool, say: Any = None) -> None:
    """The ranked trials (a Rich table on a terminal, plain text otherwise, or sweep.json's JSON); exit 1 if none was ranked."""
    from rich.console import Console

    from kerasrun.runs.table import format_number, plain_table, rich_table
    from kerasrun.sweep.summary import missing_metric_note, summary_rows

    say = say or Console(stderr=as_json, highlight=False, soft_wrap=True)
    best = record.best()
    if as_json:
        typer.echo(json.dumps(record.as_dict(), indent=2))
    else:
        headers, rows = summary_rows(record)
        if say.is_terminal:
            from rich import box

            def column(position: int, _: str) -> dict[str, Any]:  # short columns keep their width; long values fold
                return {"overflow": "fold", "min_width": min(max(len(r[position]) for r in [headers, *rows]), 14)}

            title = f"sweep {record.path.name}: ranked by {record.metric} ({record.mode})"
            say.print(rich_table(headers, rows, column, title=title, box=box.SIMPLE_HEAD))
        else:
            typer.echo(plain_table(headers, rows))
        typer.echo(
            f"best: {best.run_dir} ({record.path / str(best.run_dir)}), {record.metric} {format_number(best.metric, missing='-', keep_small=True)} ({record.mode})"
            if best
            else "no trial completed with a value of " + record.metric
        )
    if (note := missing_metric_note(record)) is not None:
        err_console().print(f"warning: {note}", markup=False)
    if best is None:  # no trial completed with a value of the metric: the sweep found nothing
        raise typer.Exit(EXIT_FAILED)


COMMANDS = {"sweep": sweep}  # name: function, in `--help` order
