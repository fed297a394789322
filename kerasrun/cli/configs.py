"""`kerasrun validate`, `show`, `schema`, `data` and `plot-model`: a config checked, printed, its data and model inspected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kerasrun.cli.options import SetOption
from kerasrun.cli.render import EXIT_FAILED, err_console, fail, json_stdout, reported_errors
from kerasrun.errors import ConfigError


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
                from kerasrun.build.checks import activation_notes
                from kerasrun.build.model import summarize
                from kerasrun.train.experiment import build_checked_model

                model = build_checked_model(config)
                typer.echo(summarize(model))
                for note in activation_notes(model, config):
                    err_console().print(f"note: {note}", markup=False)
            typer.echo(f"ok: {path}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        fail(ConfigError(problems))
    if not build:  # "ok" is the schema's word: the arguments of Keras objects are Keras's to judge
        err_console().print(
            "(keys and values checked without TensorFlow; `validate --build` also builds the model, so Keras judges "
            "layer, optimizer and callback names and arguments)",
            markup=False,
            style="dim",
        )


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

    with reported_errors(), json_stdout(as_json):
        config = load_config(config_path, list(set_ or []))
        from kerasrun.data.summary import data_report

        data, report = data_report(config, seconds)
    for note in data.notes:
        err_console().print(f"note: {note}", markup=False)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    print_data_report(report, config.train.batch_size)


def print_data_report(report: dict[str, Any], batch_size: int) -> None:
    """The data command's report as Rich tables: one row per split, then the class counts and the throughput."""
    from rich.console import Console
    from rich.markup import escape

    from kerasrun.data.summary import class_rows, split_rows
    from kerasrun.runs.table import rich_table

    console = Console(highlight=False)
    # Cells are text, not Rich markup: `x[thal]`, a class named `[other]`.
    splits = [[escape(cell) for cell in row] for row in split_rows(report)]
    console.print(rich_table(("split", "rows", "arrays (shape, dtype)"), splits, title="data"))
    console.print(f"loaded in {report['load_s']:.2f} s", markup=False)
    headers, rows = class_rows(report)
    if headers:
        console.print(rich_table(headers, [[escape(cell) for cell in row] for row in rows], title="samples per class"))
    speed = report.get("throughput")
    if speed:
        console.print(
            f"input pipeline: {speed['samples_per_s']:,.0f} samples/s ({speed['batches_per_s']:,.1f} batches of {batch_size}/s) "
            f"over {speed['seconds']:.1f} s, shuffled and batched as training reads it",
            markup=False,
        )


def plot_model(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Picture file (.png, .svg, .pdf, …).")] = Path("model.png"),
    set_: SetOption = None,
) -> None:
    """Draw the model with keras.utils.plot_model (needs pydot and Graphviz); else print the text summary."""
    from kerasrun.config.load import load_config

    with reported_errors():
        config = load_config(config_path, list(set_ or []))
        from kerasrun.build.model import draw_model, summarize
        from kerasrun.train.experiment import build_inspected_model

        model = build_inspected_model(config)
        if not draw_model(model, output):
            typer.echo(summarize(model))
            err_console().print(
                "cannot draw the model: keras.utils.plot_model needs pydot and Graphviz — "
                "`pip install pydot` and `apt-get install graphviz` (or your system's package); the text summary is above.",
                markup=False,
            )
            raise typer.Exit(EXIT_FAILED)
    typer.echo(f"wrote {output}")


def show(config_path: Annotated[Path, typer.Argument(metavar="CONFIG")], set_: SetOption = None) -> None:
    """Print the fully resolved config: bases (extends) merged, ${VAR}s substituted, defaults filled in, overrides applied."""
    from kerasrun.config.load import load_config
    from kerasrun.config.resolved import config_to_yaml

    with reported_errors():
        typer.echo(config_to_yaml(load_config(config_path, list(set_ or []))), nl=False)


def schema() -> None:
    """Print the JSON Schema of the config format (for editor completion)."""
    from kerasrun.config.schema import Config

    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


COMMANDS = {
    "validate": validate,
    "data": data_command,
    "plot-model": plot_model,
    "show": show,
    "schema": schema,
}  # name: function, in `--help` order
