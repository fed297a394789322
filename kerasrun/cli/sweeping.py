"""`kerasrun sweep`: train a config many times with different values and rank the trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kerasrun.cli.options import Mode, Progress, Pruner, Sampler, SetOption
from kerasrun.cli.render import EXIT_FAILED, err_console, json_stdout, reported_errors, silently
from kerasrun.train.signals import Interrupted


def sweep(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="Experiment YAML file.")],
    grid: Annotated[
        list[str] | None, typer.Option("--grid", "-g", help="key=v1,v2,… (values parsed like --set). Repeatable: every combination.")
    ] = None,
    random_count: Annotated[int | None, typer.Option("--random", help="N trials drawn from the --space distributions (seeded).")] = None,
    optuna_count: Annotated[
        int | None, typer.Option("--optuna", help="N trials of Bayesian search with Optuna (the `sweep` extra).")
    ] = None,
    space_items: Annotated[
        list[str] | None,
        typer.Option("--space", help="key=loguniform(a,b) | uniform(a,b) | int(a,b) | choice(v1,v2,…). Repeatable."),
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="The history.json column that ranks trials (its best epoch).")] = "val_loss",
    mode: Annotated[Mode, typer.Option("--mode", help="Whether the metric is better low or high.")] = "min",
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random and Optuna's sampler.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes, each training its share of the trials.")] = 1,
    set_: SetOption = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where the sweep folder goes (default: output.runs_dir).")] = None,
    print_commands: Annotated[
        bool, typer.Option("--print-commands", help="Print one `kerasrun train … --set …` line per trial and exit (for a Slurm array).")
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
    """Train a config many times with different values (grid, random or Optuna), in one process; rank the trials."""
    import shlex

    from kerasrun.runs.table import format_number, plain_table, rich_table
    from kerasrun.sweep.search import create_sweep, plan_sweep, run_sweep
    from kerasrun.sweep.summary import missing_metric_note, summary_rows, trial_line
    from kerasrun.train.signals import signals_raise_interrupted

    with reported_errors(silently):  # a stop while every trial's config is being checked: nothing was written yet
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
        )
        commands = plan.train_commands() if print_commands else []
    if print_commands:
        for command in commands:
            typer.echo(shlex.join(command))
        return
    from rich.console import Console

    say = Console(stderr=as_json, highlight=False, soft_wrap=True)  # a long trial line stays one line in a log
    record = None

    def recorded(stopped: Interrupted) -> None:
        where = f"; {record.path / 'sweep.json'} records the trials that ran" if record is not None else ""
        err_console().print(f"interrupted ({stopped.name}){where}", markup=False)

    # With workers, this process only waits for them (as launch does).
    with reported_errors(recorded), signals_raise_interrupted(force_exit=jobs == 1), json_stdout(as_json):
        record = create_sweep(plan, ["kerasrun", *sys.argv[1:]])
        say.print(f"sweep folder: {record.path}  ({plan.count} {plan.method} trial(s), {record.metric} {record.mode})", markup=False)
        run_sweep(plan, record, lambda rec, trial: say.print(trial_line(rec, trial), markup=False))
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
        best = record.best()
        typer.echo(
            f"best: trial {best.index + 1} ({record.path / str(best.run_dir)}), {record.metric} {format_number(best.metric, missing='-', keep_small=True)}"
            if best
            else "no trial completed with a value of " + record.metric
        )
    if (note := missing_metric_note(record)) is not None:
        err_console().print(f"warning: {note}", markup=False)
    if not any(t.status == "completed" for t in record.trials):
        raise typer.Exit(EXIT_FAILED)


COMMANDS = {"sweep": sweep}  # name: function, in `--help` order
