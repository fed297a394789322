"""`kerasrun trust`, `runs`, `compare` and `plot`: run folders signed, listed, compared and drawn (no TensorFlow)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kerasrun.cli.options import RunsDirOption, RunTargets
from kerasrun.cli.render import err_console, out_console, reported_errors, silently, tell, warn_unreadable
from kerasrun.rundir.layout import CURVES_FILE


def trust_command(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="Run folders to sign with your key.")],
) -> None:
    """Trust run folders from elsewhere: show the code their config names, then sign them with your key."""
    from kerasrun.config.schema import import_paths
    from kerasrun.rundir.opened import open_run, sign_run

    with reported_errors(silently):
        for run_dir in run_dirs:
            run = open_run(run_dir, trust=True)  # read once: what is shown is what gets signed
            names = import_paths(run.config())
            typer.echo(f"{run_dir}: " + (f"its config imports {', '.join(names)}" if names else "its config names no Python code"))
            sign_run(run_dir, run.info, run.config_text.encode("utf-8"))
            typer.echo(f"trusted {run_dir} (signed with your key)")


def runs_command(
    runs_dir: RunsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (only JSON on stdout).")] = False,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only runs with this status (completed, running, crashed, …). Repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only runs whose name (or folder) matches this glob, e.g. 'mnist-*'.")] = None,
) -> None:
    """List the run folders: status (a dead `running` run shows as crashed), epochs, loop, device, metrics."""
    from kerasrun.runs.listing import COLUMNS, list_runs, table_cells
    from kerasrun.runs.table import plain_table, rich_table

    with reported_errors():
        from kerasrun.rundir.remote import url_of

        if url := url_of(runs_dir):  # gs://… (needs TensorFlow's gfile, imported only now): a local copy of the run folders' JSON
            from kerasrun.rundir.remote import local_runs_listing

            runs_dir = local_runs_listing(url, "--runs-dir")
        statuses = [s for value in status or [] for s in value.split(",") if s]
        summaries = list_runs(runs_dir or Path("runs"), statuses, name)
    if as_json:
        typer.echo(json.dumps([summary.to_json() for summary in summaries], indent=2))
        return
    rows = [table_cells(summary) for summary in summaries]
    if not sys.stdout.isatty():
        if rows:
            typer.echo(plain_table(COLUMNS, rows))
        show_sweeps(runs_dir or Path("runs"), statuses, name)
        return
    from rich import box

    colours = {"completed": "green", "running": "cyan", "interrupted": "yellow", "crashed": "red", "failed": "red", "diverged": "magenta"}
    coloured = [[*row[:2], f"[{colours.get(row[2], 'bold red')}]{row[2]}[/]", *row[3:]] for row in rows]

    def column(_: int, header: str) -> dict[str, Any]:
        return {
            "justify": "right" if header in ("epochs", "duration") else "left",
            "no_wrap": header in ("status", "duration", "epochs"),
            "overflow": "fold",
        }

    caption = "monitored: the metric the run's callbacks watch, after the last epoch"
    out_console().print(rich_table(COLUMNS, coloured, column, box=box.SIMPLE_HEAD, caption=caption, caption_justify="left"))
    if not rows:
        err_console().print("no runs found", markup=False)
    show_sweeps(runs_dir or Path("runs"), statuses, name)


def show_sweeps(runs_dir: Path, statuses: list[str] | None = None, name: str | None = None) -> None:
    """One line per sweep folder: its status (a dead one shows as crashed), trials ended of planned, the best trial.

    `statuses` and `name` (a glob on the folder) filter them as they filter the runs.
    """
    from fnmatch import fnmatchcase

    from kerasrun.runs.sweeps import list_sweeps
    from kerasrun.runs.table import format_number

    for sweep in list_sweeps(runs_dir):
        if (statuses and sweep.status not in statuses) or (name and not fnmatchcase(sweep.folder, name)):
            continue
        if sweep.problem:
            typer.echo(f"sweep {sweep.folder}: unreadable: {sweep.problem}")
            continue
        line = f"sweep {sweep.folder}: {sweep.status}, {sweep.ended} of {sweep.planned if sweep.planned is not None else '?'} trials ended"
        if sweep.best_run_dir:
            line += f", best {sweep.best_run_dir} ({sweep.metric} {format_number(sweep.best_metric)})"
        if sweep.status in ("crashed", "interrupted"):
            line += f"; continue it with `kerasrun sweep --resume {runs_dir / sweep.folder}`"
        typer.echo(line)


def compare(
    targets: RunTargets,
    runs_dir: RunsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (only JSON on stdout).")] = False,
) -> None:
    """Show what differs between runs: config keys, final/best/test metrics with deltas, versions and devices."""
    from kerasrun.runs.compare import compare_runs, metric_cells, run_cells
    from kerasrun.runs.find import find_run_dirs
    from kerasrun.runs.table import rich_table

    with reported_errors():
        comparison = compare_runs(find_run_dirs(targets, runs_dir, warn_unreadable, tell))
    if as_json:
        typer.echo(json.dumps(comparison.to_json(), indent=2))
        return
    from rich.console import Console

    # Piped into a file or a pager, the tables keep whole metric names instead of Rich's default 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(rich_table(("", "run", "name", "status", "epochs"), run_cells(comparison), title="runs", title_justify="left"))
    numbered = [f"#{i + 1}" for i in range(len(comparison.runs))]
    if comparison.config:
        console.print(values_table(comparison.config, numbered, "key", title="config keys that differ", title_justify="left"))
    else:
        console.print("the configs are identical", markup=False)
    headers, rows = metric_cells(comparison)
    right = {"justify": "right"}
    title = "metrics (Δ against #1; best: the epoch in brackets)"
    console.print(
        rich_table(headers, rows, lambda position, _: right if position > 1 else {}, title=title, title_justify="left"), markup=False
    )
    if comparison.environment:
        console.print("versions and devices that differ", style="italic")
        console.print(values_table(comparison.environment, numbered, ""))


def values_table(rows: list[tuple[str, list[Any]]], labels: list[str], first: str, **options: Any) -> Any:
    """A Rich table of (key, [value per run]) rows: one column per run."""
    from kerasrun.runs.compare import value_cells
    from kerasrun.runs.table import rich_table

    return rich_table((first, *labels), value_cells(rows), lambda position, _: {"overflow": "fold"} if position else {}, **options)


def plot_command(
    targets: RunTargets,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Picture file: .png, .svg or .pdf. Without it: a plot in the terminal (plotext), else curves.png."
        ),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Only this metric (train and val_ curves). Repeatable.")
    ] = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Draw learning curves: a panel per metric, train and val_ curves, a colour per run, the best epoch marked."""
    from kerasrun.runs.find import find_run_dirs
    from kerasrun.runs.plot import choose_metrics, load_curves, plot_in_terminal, save_curves

    with reported_errors():
        if output is not None:
            from kerasrun.runs.plot import output_format

            output_format(output)  # a bad suffix fails before any run is read
        curves, unreadable = load_curves(find_run_dirs(targets, runs_dir, warn_unreadable, tell))
        for path, why in unreadable:
            err_console().print(f"warning: {path}: {why}", markup=False)
        metrics = choose_metrics(curves, metric)
        if output is None and sys.stdout.isatty():
            try:
                typer.echo(plot_in_terminal(curves, metrics, shutil.get_terminal_size().columns))
                return
            except Exception as exc:  # no plotext, or one whose API we don't know: the picture file is the fallback
                err_console().print(f"note: no terminal plot ({exc}); writing a picture instead", markup=False)
        written = save_curves(curves, metrics, output or Path(CURVES_FILE))
    typer.echo(f"wrote {written}")


COMMANDS = {"trust": trust_command, "runs": runs_command, "compare": compare, "plot": plot_command}  # name: function, in `--help` order
