"""The `kerasrun` command: parse arguments, call the library, render results and errors as exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from kerasrun.errors import ConfigError, KerasrunError, format_problem
from kerasrun.rundir.layout import CURVES_FILE, RUN_FILE
from kerasrun.startup import configure_command_process
from kerasrun.train.signals import Interrupted, as_interrupted

EXIT_FAILED = 1

app = typer.Typer(
    name="kerasrun",
    help="Declare a Keras experiment in one YAML file; train it, evaluate it, keep a run folder.\n\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 config or usage error, 3 diverged (NaN/inf loss), "
    "130 / 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (resumable).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)
state = {"debug": False}


class Progress(str, Enum):
    auto = "auto"
    rich = "rich"
    plain = "plain"
    json = "json"
    none = "none"


class SplitName(str, Enum):
    test = "test"
    validation = "validation"


SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a config key: dotted.key=value (YAML value). Repeatable.")
]


def err_console() -> Any:
    """A Rich console on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # never break a file path across lines


def out_console() -> Any:
    """A Rich console on stdout."""
    from rich.console import Console

    return Console(highlight=False)


def fail(exc: BaseException) -> NoReturn:
    """Render a kerasrun error (all its problems) and exit with its code; never a traceback unless --debug."""
    console = err_console()
    if state["debug"] and sys.exc_info()[0] is not None:
        console.print_exception()
    if isinstance(exc, ConfigError):
        count = len(exc.problems)
        console.print(f"[bold red]error:[/] {count} problem{'s' if count != 1 else ''} found", markup=True)
        for problem in exc.problems:
            console.print(format_problem(problem), markup=False)
    else:
        console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
    raise typer.Exit(getattr(exc, "exit_code", EXIT_FAILED))


def print_metrics(title: str, metrics: dict[str, float], as_json: bool = False) -> None:
    """Final metrics as a Rich table (or JSON)."""
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    out_console().print(table)


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Declare a Keras experiment in one YAML file; train it, evaluate it, keep a run folder."""
    state["debug"] = debug
    if debug:
        os.environ["KERASRUN_DEBUG"] = "1"


TrustOption = Annotated[
    bool, typer.Option("--trust", help="Use a run folder that your kerasrun did not sign (someone else's, or edited): it may run code.")
]


def report_interrupted(exc: Interrupted, run_dir: Path | None) -> NoReturn:
    """Say what an interruption left behind and exit 128 + the signal number."""
    console = err_console()
    for note in exc.notes:
        console.print(f"[bold red]error:[/] {note}", markup=True)
    if run_dir is not None and not (run_dir / RUN_FILE).exists():  # stopped while the new folder was being set up
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = None
    if run_dir is None:
        console.print(f"interrupted ({exc.name}) before a run folder was created", markup=False)
    elif exc.not_resumable:
        console.print(f"interrupted ({exc.name}); {run_dir} is marked interrupted; it can't be resumed: {exc.not_resumable}", markup=False)
    else:
        console.print(
            f"interrupted ({exc.name}); {run_dir} is marked interrupted — continue it with `kerasrun resume {run_dir}`", markup=False
        )
    raise typer.Exit(exc.exit_code)


def run_and_report(start: Any, progress: Progress) -> Any:
    """Run `start(set_run_dir)` with SIGTERM/SIGHUP handled like Ctrl-C; render errors and interruptions."""
    from kerasrun.train.signals import signals_raise_interrupted

    run_dir: list[Path] = []
    try:
        with signals_raise_interrupted():
            result = start(run_dir.append)
    except KeyboardInterrupt as exc:
        report_interrupted(as_interrupted(exc), run_dir[0] if run_dir else None)
    except KerasrunError as exc:
        fail(exc)
    for warning in result.warnings:
        err_console().print(f"warning: {warning}", markup=False)
    if result.metrics and progress != Progress.none:
        print_metrics(f"test metrics ({result.run_dir.name})", result.metrics, as_json=progress == Progress.json)
    return result


def say(text: str, progress: Progress) -> None:
    """An informational line: on stdout, except with `--progress json`, whose stdout holds only JSON lines."""
    typer.echo(text, err=progress == Progress.json)


@app.command()
def train(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="Experiment YAML file.")],
    set_: SetOption = None,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="One epoch, at most 2 batches each, CPU, into a temp folder (removed after): a seconds-long check."),
    ] = False,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where run folders go (default: output.runs_dir).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the config's name).")] = None,
    init_from: Annotated[
        Path | None, typer.Option("--init-from", help="Start from these weights: a run folder, .keras or .weights.h5 (model.init_from).")
    ] = None,
    progress: Annotated[Progress, typer.Option("--progress", help="auto: Rich on a terminal, plain lines otherwise.")] = Progress.auto,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | gpu | gpu:N (overrides runtime.device).")] = None,
) -> None:
    """Build the model, train it, and write a new run folder."""
    from kerasrun.config.load import load_config, shrink_for_smoke

    values: dict[str, Any] = {"name": name} if name is not None else {}  # as typed: `--name 2024` is a name, not a number
    if init_from is not None:  # the path replaces path/run; the config's skip list stays
        values["model.init_from.path"] = str(init_from.resolve())
        values["model.init_from.run"] = None
    if device is not None:
        values["runtime.device"] = device
    scratch: list[Path] = []  # temporary folders to remove at the end

    def start(set_run_dir: Any) -> Any:
        config = load_config(config_path, list(set_ or []), values)
        if smoke:
            config = shrink_for_smoke(config)
        from kerasrun.rundir.record import create_run_dir
        from kerasrun.train.run import prepare_experiment, run_experiment

        experiment = prepare_experiment(config, runs_dir)
        base, shown = runs_dir, progress
        if not experiment.placement.is_chief:  # multi-worker: only the chief keeps a run folder
            base, shown = Path(tempfile.mkdtemp(prefix="kerasrun-worker-")), Progress.none
            scratch.append(base)
        elif base is None and smoke:
            base = Path(tempfile.mkdtemp(prefix="kerasrun-smoke-"))
            scratch.append(base)
        run_dir = create_run_dir(base or Path(config.output.runs_dir), config.name)
        set_run_dir(run_dir)
        say(f"run folder: {run_dir}  (device {experiment.placement.device}, {experiment.placement.replicas} replica(s))", progress)
        for note in experiment.data.notes:
            typer.echo(f"note: {note}", err=True)
        if experiment.init_from:
            loaded = experiment.init_from
            parts = [f"loaded {', '.join(loaded['loaded']) or 'nothing'}"]
            parts += [
                f"{what} {', '.join(loaded[key])}" for key, what in (("skipped", "kept as built"), ("left_out", "left out")) if loaded[key]
            ]
            say(f"weights from {loaded['path']}: " + "; ".join(parts), progress)
        return run_experiment(experiment, run_dir, shown.value, command=["kerasrun", *sys.argv[1:]])

    try:
        result = run_and_report(start, progress)
    finally:
        for folder in scratch:  # a smoke run's or a worker's folder only held what nobody keeps
            shutil.rmtree(folder, ignore_errors=True)
    say(f"done: {result.run_dir}" + (" (temporary folder removed)" if smoke and scratch else ""), progress)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run folder to continue.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="train.epochs=N to train on past the planned epochs (also runtime.device, output.checkpoint)."),
    ] = None,
    trust: TrustOption = False,
    progress: Annotated[Progress, typer.Option("--progress", help="auto: Rich on a terminal, plain lines otherwise.")] = Progress.auto,
) -> None:
    """Continue an interrupted, crashed or completed run in its own folder, from its newest checkpoint."""

    def start(set_run_dir: Any) -> Any:
        from kerasrun.train.resume import load_for_resume

        plan = load_for_resume(run_dir, list(set_ or []), trust)
        from kerasrun.train.run import prepare_experiment, run_experiment

        experiment = prepare_experiment(plan.config, initial_weights=False)
        set_run_dir(run_dir)
        say(f"resuming {run_dir} after epoch {plan.state.epoch} of {plan.config.train.epochs}", progress)
        if plan.retrained:
            epochs = (
                f"epoch {plan.state.epoch + 1}"
                if plan.retrained == 1
                else f"epochs {plan.state.epoch + 1}-{plan.state.epoch + plan.retrained}"
            )
            err_console().print(f"note: {epochs} ran after the newest checkpoint and will be trained again", markup=False)
        return run_experiment(experiment, run_dir, progress.value, command=["kerasrun", *sys.argv[1:]], resume=plan)

    result = run_and_report(start, progress)
    say(f"done: {result.run_dir}", progress)


@app.command()
def launch(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="Experiment YAML file.")],
    workers: Annotated[int, typer.Option("--workers", "-n", min=1, help="Worker processes on 127.0.0.1.")] = 2,
    set_: SetOption = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where the chief's run folder goes.")] = None,
    progress: Annotated[Progress, typer.Option("--progress", help="The chief's progress display.")] = Progress.auto,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before the workers are stopped.")] = 24 * 3600,
) -> None:
    """Train with runtime.strategy=multi_worker in N local processes (TF_CONFIG set for each)."""
    from kerasrun.config.load import load_config
    from kerasrun.train.launch import launch_workers

    try:
        load_config(config_path, list(set_ or []))  # a bad config fails here, once, not in every worker
        args = [str(config_path), "--progress", progress.value, *(arg for s in set_ or [] for arg in ("--set", s))]
        if runs_dir:
            args += ["--runs-dir", str(runs_dir)]
        code = launch_workers(args, workers, timeout)
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        err_console().print(f"interrupted ({interrupted.name}); passed it on to the workers, which have stopped", markup=False)
        raise typer.Exit(interrupted.exit_code) from None
    except KerasrunError as exc:
        fail(exc)
    raise typer.Exit(code)


class Mode(str, Enum):
    min = "min"
    max = "max"


class Sampler(str, Enum):
    tpe = "tpe"
    random = "random"


class Pruner(str, Enum):
    median = "median"
    none = "none"


@app.command()
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
    mode: Annotated[Mode, typer.Option("--mode", help="Whether the metric is better low or high.")] = Mode.min,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random and Optuna's sampler.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes, each training its share of the trials.")] = 1,
    set_: SetOption = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where the sweep folder goes (default: output.runs_dir).")] = None,
    print_commands: Annotated[
        bool, typer.Option("--print-commands", help="Print one `kerasrun train … --set …` line per trial and exit (for a Slurm array).")
    ] = False,
    sampler: Annotated[Sampler, typer.Option("--sampler", help="Optuna's sampler.")] = Sampler.tpe,
    pruner: Annotated[
        Pruner, typer.Option("--pruner", help="Optuna's pruner: stops trials whose metric is worse than the median at the same epoch.")
    ] = Pruner.median,
    prune_startup: Annotated[int, typer.Option("--prune-startup", min=0, help="Trials that run in full before pruning starts.")] = 2,
    prune_warmup: Annotated[int, typer.Option("--prune-warmup", min=0, help="Epochs a trial trains before it can be pruned.")] = 1,
    progress: Annotated[Progress, typer.Option("--progress", help="Each trial's epoch display (in this process only).")] = Progress.none,
    as_json: Annotated[bool, typer.Option("--json", help="Print only sweep.json's content on stdout (the rest on stderr).")] = False,
) -> None:
    """Train a config many times with different values (grid, random or Optuna), in one process; rank the trials."""
    import shlex

    from kerasrun.sweep.search import create_sweep, plan_sweep, run_sweep
    from kerasrun.sweep.summary import format_number, missing_metric_note, plain_table, summary_rows, trial_line
    from kerasrun.train.signals import signals_raise_interrupted

    try:
        plan = plan_sweep(
            config_path,
            list(grid or []),
            random_count,
            optuna_count,
            list(space_items or []),
            metric=metric,
            mode=mode.value,
            seed=seed,
            jobs=jobs,
            base_overrides=list(set_ or []),
            runs_dir=runs_dir,
            progress=Progress.none.value if as_json or jobs > 1 else progress.value,
            sampler=sampler.value,
            pruner=pruner.value,
            prune_startup=prune_startup,
            prune_warmup=prune_warmup,
        )
        if print_commands and plan.method == "optuna":
            raise ConfigError(
                "--print-commands needs a planned search (--grid or --random): Optuna picks each trial's values from the ones before",
                file="--print-commands",
            )
    except KerasrunError as exc:
        fail(exc)
    except KeyboardInterrupt as exc:  # while every trial's config was being checked: nothing was written yet
        raise typer.Exit(as_interrupted(exc).exit_code) from None
    if print_commands:
        for trial in plan.trials:
            typer.echo(shlex.join(plan.train_command(trial)))
        return
    from rich.console import Console

    say = Console(stderr=as_json, highlight=False, soft_wrap=True)  # a long trial line stays one line in a log
    record = None
    try:
        with signals_raise_interrupted(force_exit=jobs == 1):  # with workers, this process only waits for them (as launch does)
            record = create_sweep(plan, ["kerasrun", *sys.argv[1:]])
            say.print(f"sweep folder: {record.path}  ({plan.count} {plan.method} trial(s), {record.metric} {record.mode})", markup=False)
            run_sweep(plan, record, lambda rec, trial: say.print(trial_line(rec, trial), markup=False))
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        where = f"; {record.path / 'sweep.json'} records the trials that ran" if record is not None else ""
        err_console().print(f"interrupted ({interrupted.name}){where}", markup=False)
        raise typer.Exit(interrupted.exit_code) from None
    except KerasrunError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(record.as_dict(), indent=2))
    else:
        headers, rows = summary_rows(record)
        if say.is_terminal:
            from rich import box
            from rich.table import Table

            table = Table(title=f"sweep {record.path.name}: ranked by {record.metric} ({record.mode})", box=box.SIMPLE_HEAD)
            for position, header in enumerate(headers):  # short columns keep their width; long values fold
                table.add_column(header, overflow="fold", min_width=min(max(len(r[position]) for r in [headers, *rows]), 14))
            for row in rows:
                table.add_row(*row)
            say.print(table)
        else:
            typer.echo(plain_table(headers, rows))
        best = record.best()
        typer.echo(
            f"best: trial {best.index + 1} ({record.path / str(best.run_dir)}), {record.metric} {format_number(best.metric)}"
            if best
            else "no trial completed with a value of " + record.metric
        )
    if (note := missing_metric_note(record)) is not None:
        err_console().print(f"warning: {note}", markup=False)
    if not any(t.status == "completed" for t in record.trials):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def evaluate(
    target: Annotated[Path, typer.Argument(metavar="RUN_DIR|CONFIG", help="A run folder, or a config (its newest completed run).")],
    split: Annotated[SplitName, typer.Option("--split", help="Which data to score.")] = SplitName.test,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as one JSON object.")] = False,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where to look for runs of a CONFIG.")] = None,
    set_: SetOption = None,
    trust: TrustOption = False,
) -> None:
    """Score a completed run's model (loaded with Keras safe_mode) on its test or validation data."""
    try:
        from kerasrun.runs.find import find_run_dir

        run_dir, unreadable = find_run_dir(target, runs_dir, list(set_ or []))
        warn_unreadable(unreadable)
        from kerasrun.use.evaluate import evaluate_run

        metrics = evaluate_run(run_dir, split.value, trust)
    except KerasrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    print_metrics(f"{split.value} metrics ({run_dir.name})", metrics, as_json)


def warn_unreadable(unreadable: list[tuple[Path, str]]) -> None:
    """Name the run.json files a search skipped because they can't be read."""
    for path, why in unreadable:
        err_console().print(f"warning: skipped {path}: {why}", markup=False)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A completed run folder.")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Features: .npy, .npz or .csv.")],
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Predictions: .npy, .npz or .csv.")],
    trust: TrustOption = False,
) -> None:
    """Predict with a run's saved model, applying the run's feature preprocessing."""
    try:
        from kerasrun.runs.find import read_run_info

        read_run_info(run_dir)
        from kerasrun.use.evaluate import predict_run

        shape = predict_run(run_dir, input_path, output_path, trust)
    except KerasrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    typer.echo(f"wrote predictions {shape} to {output_path}")


class ExportFormat(str, Enum):
    saved_model = "saved_model"
    tflite = "tflite"
    onnx = "onnx"


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A completed run folder.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="SavedModel, TFLite (LiteRT) or ONNX (the `onnx` extra).")] = (
        ExportFormat.saved_model
    ),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: RUN_DIR/export/saved_model, model.tflite or model.onnx)."),
    ] = None,
    trust: TrustOption = False,
) -> None:
    """Export a run's model with its feature preprocessing inside: it takes raw inputs and gives `predict`'s outputs."""
    try:
        from kerasrun.runs.find import read_run_info

        read_run_info(run_dir)
        from kerasrun.use.export import export_run

        result = export_run(run_dir, fmt.value, output, trust)
    except KerasrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    shape = ", ".join("None" if d is None else str(d) for d in result.input_shape)
    steps = f" with preprocessing: {'; '.join(result.steps)}" if result.steps else ""
    typer.echo(f"exported {result.format} to {result.path}: input ({shape}) {result.input_dtype}{steps}")
    if result.max_abs_diff is None:
        err_console().print("note: not checked against the Keras model (no raw samples, or onnxruntime is not installed)", markup=False)
    else:
        typer.echo(f"checked on raw samples: max difference from `kerasrun predict` {result.max_abs_diff:.2g}")


@app.command("trust")
def trust_command(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="Run folders to sign with your key.")],
) -> None:
    """Trust run folders from elsewhere: show the code their config names, then sign them with your key."""
    from kerasrun.config.schema import import_paths
    from kerasrun.runs.find import open_run, sign_run

    try:
        for run_dir in run_dirs:
            run = open_run(run_dir, trust=True)  # read once: what is shown is what gets signed
            names = import_paths(run.config())
            typer.echo(f"{run_dir}: " + (f"its config imports {', '.join(names)}" if names else "its config names no Python code"))
            sign_run(run_dir, run.info, run.config_text.encode("utf-8"))
            typer.echo(f"trusted {run_dir} (signed with your key)")
    except KerasrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def resolve_runs(targets: list[Path], runs_dir: Path | None) -> list[Path]:
    """Run folders as `evaluate` finds them: a folder itself, or a config's newest completed run (under --runs-dir)."""
    from kerasrun.runs.find import find_run_dir

    found = []
    for target in targets:
        run_dir, unreadable = find_run_dir(target, None if target.is_dir() else runs_dir)
        warn_unreadable(unreadable)
        found.append(run_dir)
    return found


RunsDirOption = Annotated[Path | None, typer.Option("--runs-dir", help="Where run folders are (default: runs).")]
RunTargets = Annotated[
    list[Path], typer.Argument(metavar="RUN...", help="Run folders, or configs (each one's newest completed run, as evaluate finds it).")
]


@app.command("runs")
def runs_command(
    runs_dir: RunsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (only JSON on stdout).")] = False,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only runs with this status (completed, running, crashed, …). Repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only runs whose name (or folder) matches this glob, e.g. 'mnist-*'.")] = None,
) -> None:
    """List the run folders: status (a dead `running` run shows as crashed), epochs, loop, device, metrics."""
    from kerasrun.runs.listing import COLUMNS, list_runs, plain_table, table_cells

    try:
        summaries = list_runs(runs_dir or Path("runs"), [s for value in status or [] for s in value.split(",") if s], name)
    except KerasrunError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps([summary.to_json() for summary in summaries], indent=2))
        return
    rows = [table_cells(summary) for summary in summaries]
    if not sys.stdout.isatty():
        if rows:
            typer.echo(plain_table(COLUMNS, rows))
        return
    from rich import box
    from rich.table import Table

    colours = {"completed": "green", "running": "cyan", "interrupted": "yellow", "crashed": "red", "failed": "red", "diverged": "magenta"}
    table = Table(
        box=box.SIMPLE_HEAD, caption="monitored: the metric the run's callbacks watch, after the last epoch", caption_justify="left"
    )
    for column in COLUMNS:
        table.add_column(
            column,
            justify="right" if column in ("epochs", "duration") else "left",
            no_wrap=column in ("status", "duration", "epochs"),
            overflow="fold",
        )
    for row in rows:
        colour = colours.get(row[2], "bold red")
        table.add_row(*row[:2], f"[{colour}]{row[2]}[/]", *row[3:])
    out_console().print(table)
    if not rows:
        err_console().print("no runs found", markup=False)


@app.command()
def compare(
    targets: RunTargets,
    runs_dir: RunsDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (only JSON on stdout).")] = False,
) -> None:
    """Show what differs between runs: config keys, final/best/test metrics with deltas, versions and devices."""
    from kerasrun.runs.compare import compare_runs, format_delta
    from kerasrun.runs.listing import format_number

    try:
        comparison = compare_runs(resolve_runs(targets, runs_dir))
    except KerasrunError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(comparison.to_json(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    labels = [Path(run["path"]).name for run in comparison.runs]
    # Piped into a file or a pager, the tables keep whole metric names instead of Rich's default 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    runs_table = Table(title="runs", title_justify="left")
    for column in ("", "run", "name", "status", "epochs"):
        runs_table.add_column(column)
    for index, run in enumerate(comparison.runs):
        runs_table.add_row(f"#{index + 1}", labels[index], str(run["name"]), run["status"], str(run["epochs"]))
    console.print(runs_table)
    numbered = [f"#{i + 1}" for i in range(len(labels))]
    if comparison.config:
        console.print(values_table(comparison.config, numbered, "key", title="config keys that differ", title_justify="left"))
    else:
        console.print("the configs are identical", markup=False)
    table = Table(title="metrics (Δ against #1; best: the epoch in brackets)", title_justify="left")
    table.add_column("")
    table.add_column("metric")
    for index, label in enumerate(numbered):
        table.add_column(label, justify="right")
        if index:
            table.add_column(f"Δ{label}", justify="right")
    for row in comparison.metrics:
        cells = []
        for index, value in enumerate(row.values):
            epoch = f" [{row.epochs[index]}]" if row.kind == "best" and row.epochs[index] is not None else ""
            cells.append(format_number(value) + epoch)
            if index:
                cells.append(format_delta(row.deltas[index]))
        table.add_row(row.kind, row.metric, *cells)
    console.print(table, markup=False)
    if comparison.environment:
        console.print("versions and devices that differ", style="italic")
        console.print(values_table(comparison.environment, numbered, ""))


def values_table(rows: list[Any], labels: list[str], first: str, **options: Any) -> Any:
    """A Rich table of (key, [value per run]) rows: one column per run."""
    from rich.table import Table

    from kerasrun.runs.compare import format_value

    table = Table(**options)
    table.add_column(first)
    for label in labels:
        table.add_column(label, overflow="fold")
    for key, values in rows:
        table.add_row(key, *(format_value(v) for v in values))
    return table


@app.command("plot")
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
    from kerasrun.runs.plot import choose_metrics, load_curves, plot_in_terminal, save_curves

    try:
        if output is not None:
            from kerasrun.runs.plot import output_format

            output_format(output)  # a bad suffix fails before any run is read
        curves = load_curves(resolve_runs(targets, runs_dir))
        metrics = choose_metrics(curves, metric)
        if output is None and sys.stdout.isatty():
            try:
                typer.echo(plot_in_terminal(curves, metrics, shutil.get_terminal_size().columns))
                return
            except Exception as exc:  # no plotext, or one whose API we don't know: the picture file is the fallback
                err_console().print(f"note: no terminal plot ({exc}); writing a picture instead", markup=False)
        written = save_curves(curves, metrics, output or Path(CURVES_FILE))
    except KerasrunError as exc:
        fail(exc)
    typer.echo(f"wrote {written}")


@app.command()
def validate(
    config_paths: Annotated[list[Path], typer.Argument(metavar="CONFIG...", help="Config files to check.")],
    set_: SetOption = None,
    build: Annotated[
        bool, typer.Option("--build", help="Also build and compile the model (imports TensorFlow) and print its summary.")
    ] = False,
) -> None:
    """Check configs against the schema (without TensorFlow); report every problem in every file."""
    from kerasrun.config.load import load_config

    problems: list[Any] = []
    for path in config_paths:
        try:
            config = load_config(path, list(set_ or []))
            from kerasrun.integrations import missing_packages

            if packages := missing_packages(config):  # found, not imported: validate stays fast
                raise ConfigError(packages)
            if build:
                from kerasrun.build.model import summarize
                from kerasrun.train.run import build_checked_model

                typer.echo(summarize(build_checked_model(config)))
            typer.echo(f"ok: {path}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        fail(ConfigError(problems))


@app.command("data")
def data_command(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG")],
    set_: SetOption = None,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0, help="Read the training pipeline this long to measure throughput (0: skip).")
    ] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Load the data as training would and print what each split holds and the input pipeline's throughput, without training."""
    from kerasrun.config.load import load_config

    try:
        config = load_config(config_path, list(set_ or []))
        from kerasrun.data import load_data
        from kerasrun.data.summary import describe_data, measure_throughput

        start = time.perf_counter()
        data = load_data(config)
        report = describe_data(data)
        report["load_s"] = time.perf_counter() - start
        if seconds > 0:
            report["throughput"] = measure_throughput(data, config, seconds)
    except KerasrunError as exc:
        fail(exc)
    for note in data.notes:
        err_console().print(f"note: {note}", markup=False)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    print_data_report(report, config.train.batch_size)


def print_data_report(report: dict[str, Any], batch_size: int) -> None:
    """The data command's report as Rich tables: one row per split, then the class counts and the throughput."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table("split", "rows", "arrays (shape, dtype)", title="data")
    for name in ("train", "validation", "test"):
        split = report.get(name)
        if split is None:
            continue
        if "arrays" in split:
            arrays = "\n".join(f"{key} {tuple(a['shape'])} {a['dtype']}" for key, a in split["arrays"].items())
            table.add_row(name, str(split["rows"]), arrays)
        else:
            table.add_row(name, f"{split['batches'] or '?'} batches", "\n".join(split["element"]))
    console.print(table)
    console.print(f"loaded in {report['load_s']:.2f} s", markup=False)
    names = report.get("class_names")
    counted = [(name, report[name]["classes"]) for name in ("train", "validation", "test") if name in report and "classes" in report[name]]
    if counted:
        labels = sorted({label for _, counts in counted for label in counts}, key=int)
        classes = Table("label", *(name for name, _ in counted), title="samples per class")
        for label in labels:
            named = names[int(label)] if names and int(label) < len(names) else label
            shown = label if named == label else f"{label} ({named})"
            classes.add_row(shown, *(str(counts.get(label, 0)) for _, counts in counted))
        console.print(classes)
    speed = report.get("throughput")
    if speed:
        console.print(
            f"input pipeline: {speed['samples_per_s']:,.0f} samples/s ({speed['batches_per_s']:,.1f} batches of {batch_size}/s) "
            f"over {speed['seconds']:.1f} s, shuffled and batched as training reads it",
            markup=False,
        )


@app.command("plot-model")
def plot_model(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Picture file (.png, .svg, .pdf, …).")] = Path("model.png"),
    set_: SetOption = None,
) -> None:
    """Draw the model with keras.utils.plot_model (needs pydot and Graphviz); else print the text summary."""
    from kerasrun.config.load import load_config

    try:
        config = load_config(config_path, list(set_ or []))
        from kerasrun.build.model import build_model, draw_model, summarize

        model = build_model(config)
        if not draw_model(model, output):
            typer.echo(summarize(model))
            err_console().print(
                "cannot draw the model: keras.utils.plot_model needs pydot and Graphviz — "
                "`pip install pydot` and `apt-get install graphviz` (or your system's package); the text summary is above.",
                markup=False,
            )
            raise typer.Exit(EXIT_FAILED)
    except KerasrunError as exc:
        fail(exc)
    typer.echo(f"wrote {output}")


@app.command()
def show(config_path: Annotated[Path, typer.Argument(metavar="CONFIG")], set_: SetOption = None) -> None:
    """Print the fully resolved config: bases (extends) merged, ${VAR}s substituted, defaults filled in, overrides applied."""
    from kerasrun.config.load import load_config
    from kerasrun.config.resolved import config_to_yaml

    try:
        typer.echo(config_to_yaml(load_config(config_path, list(set_ or []))), nl=False)
    except KerasrunError as exc:
        fail(exc)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config format (for editor completion)."""
    from kerasrun.config.schema import Config

    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


def main() -> None:
    """Console-script entry point: anything unexpected is one error line (the traceback with --debug)."""
    configure_command_process()
    try:
        app()
    except Exception as exc:  # not a kerasrun error: a bug, or a library failing in a way we didn't foresee
        console = err_console()
        if state["debug"]:
            console.print_exception()
        console.print(
            f"[bold red]error:[/] {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}", soft_wrap=True
        )
        console.print("(run with --debug for the traceback)", markup=False)
        sys.exit(EXIT_FAILED)
