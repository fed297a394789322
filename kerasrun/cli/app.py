"""The Typer app: its global options, each command family's commands in `--help` order, and the console-script entry point."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from kerasrun.cli import configs, managing, sweeping, training, using
from kerasrun.cli.render import EXIT_FAILED, err_console, state
from kerasrun.errors import first_line
from kerasrun.startup import configure_command_process

app = typer.Typer(
    name="kerasrun",
    help="Declare a Keras experiment in one YAML file; train it, evaluate it, keep a run folder.\n\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 config or usage error, 3 diverged (NaN/inf loss), "
    "130 / 143 / 129 interrupted by SIGINT / SIGTERM / SIGHUP (resumable).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """Declare a Keras experiment in one YAML file; train it, evaluate it, keep a run folder."""
    state["debug"] = debug
    if debug:
        os.environ["KERASRUN_DEBUG"] = "1"


for family in (training, sweeping, using, managing, configs):  # the order `kerasrun --help` lists them in
    for name, command in family.COMMANDS.items():
        app.command(name)(command)


def main() -> None:
    """Console-script entry point: anything unexpected is one error line (the traceback with --debug)."""
    configure_command_process()
    try:
        app()
    except Exception as exc:  # not a kerasrun error: a bug, or a library failing in a way we didn't foresee
        console = err_console()
        if state["debug"]:
            console.print_exception()
        console.print(f"[bold red]error:[/] {type(exc).__name__}: {first_line(exc)}", soft_wrap=True)
        console.print("(run with --debug for the traceback)", markup=False)
        sys.exit(EXIT_FAILED)
