"""What the commands show: the consoles, errors and interruptions (with their exit codes), metrics, informational lines."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, NoReturn, TextIO

import typer

from kerasrun.cli.options import Progress
from kerasrun.errors import ConfigError, KerasrunError, format_problem
from kerasrun.rundir.layout import RUN_FILE
from kerasrun.rundir.remote import shown
from kerasrun.rundir.scratch import WORKER_PREFIX
from kerasrun.train.signals import Interrupted, as_interrupted

EXIT_FAILED = 1

state = {"debug": False}


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


@contextmanager
def reported_errors(on_interrupt: Callable[[Interrupted], object] | None = None) -> Iterator[None]:
    """Render a kerasrun error raised inside and exit with its code; with `on_interrupt`, a stop exits 128 + the signal number.

    `on_interrupt(stopped)` says what the stop left behind (`silently` says nothing). Without it, Ctrl-C
    is left to Click ("Aborted!", exit 1), as the commands that never catch it have always shown.
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        if on_interrupt is None:
            raise
        stopped = as_interrupted(exc)
        on_interrupt(stopped)
        raise typer.Exit(stopped.exit_code) from None
    except KerasrunError as exc:
        fail(exc)


@contextmanager
def json_stdout(enabled: bool) -> Iterator[TextIO]:
    """Yield the real stdout; while `enabled` (`--json`, `--progress json`) anything else printed goes to stderr.

    So stdout holds kerasrun's JSON only, whatever Keras ("Found 300 files belonging to 3 classes."),
    TensorFlow, a data source's function or a callback prints meanwhile: `kerasrun … --json | jq` works.
    """
    stdout = sys.stdout
    if not enabled:
        yield stdout
        return
    with redirect_stdout(sys.stderr):
        yield stdout


def silently(stopped: Interrupted) -> None:
    """Say nothing about a stop: nothing was written yet, or nothing is left to clean up."""


def print_metrics(title: str, metrics: dict[str, float], as_json: bool = False) -> None:
    """Final metrics as a Rich table (or JSON)."""
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    from kerasrun.runs.table import format_number, rich_table

    rows = [(key, format_number(value)) for key, value in metrics.items()]
    # As wide as its title at least: a run's name in it would otherwise wrap over lines for short metric names.
    right = {"justify": "right"}
    out_console().print(
        rich_table(("metric", "value"), rows, lambda position, _: right if position else {}, title=title, min_width=len(title))
    )


def report_interrupted(exc: Interrupted, run_dir: Path | None) -> None:
    """Say what an interruption left behind: no run folder (a half-made one is removed), or one to resume."""
    console = err_console()
    for note in exc.notes:
        console.print(f"[bold red]error:[/] {note}", markup=True)
    if run_dir is not None and not (run_dir / RUN_FILE).exists():  # stopped while the new folder was being set up
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = None
    if run_dir is None:
        console.print(f"interrupted ({exc.name}) before a run folder was created", markup=False)
        return
    name = shown(run_dir)  # a remote run folder by its URL, not the local mirror it is written through
    if run_dir.parent.name.startswith(WORKER_PREFIX):  # a multi-worker run's other worker: its folder is removed
        console.print(
            f"interrupted ({exc.name}); this worker's scratch folder is removed: the chief's run folder holds the run", markup=False
        )
    elif exc.not_resumable:
        console.print(f"interrupted ({exc.name}); {name} is marked interrupted; it can't be resumed: {exc.not_resumable}", markup=False)
    else:
        from kerasrun.rundir.liveness import resume_command

        command = resume_command(name, read_info(run_dir) or {})
        console.print(f"interrupted ({exc.name}); {name} is marked interrupted — continue it with {command}", markup=False)
        if retrained := retrained_on_resume(run_dir):
            console.print(f"note: {retrained} by `kerasrun resume`", markup=False)


def retrained_on_resume(run_dir: Path) -> str | None:
    """What resume will train again, from run.json: the epochs completed after the newest checkpoint; None when there are none."""
    info = read_info(run_dir)
    if info is None:
        return None
    done, saved = info.get("epochs_completed"), info.get("checkpoint_epoch")
    if not isinstance(done, int) or not isinstance(saved, int):
        return None
    return retrained_epochs(saved, done - saved)


def read_info(run_dir: Path) -> dict[str, Any] | None:
    """run.json as the interrupted process left it, or None when it can't be read (the notes printed before say why)."""
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def retrained_epochs(checkpoint_epoch: int, retrained: int) -> str | None:
    """`epoch N ran after the newest checkpoint and will be trained again` (resume's words too); None when no epoch did."""
    if retrained <= 0:
        return None
    epochs = f"epoch {checkpoint_epoch + 1}" if retrained == 1 else f"epochs {checkpoint_epoch + 1}-{checkpoint_epoch + retrained}"
    return f"{epochs} ran after the newest checkpoint (epoch {checkpoint_epoch}) and will be trained again"


def say(text: str, progress: Progress) -> None:
    """An informational line: on stdout, except with `--progress json`, whose stdout holds only JSON lines."""
    typer.echo(text, err=progress == "json")


def tell(text: str) -> None:
    """A note on stderr (stdout may hold JSON)."""
    err_console().print(text, markup=False, highlight=False)


def warn_unreadable(unreadable: list[tuple[Path, str]]) -> None:
    """Name the run.json files a search skipped because they can't be read."""
    for path, why in unreadable:
        err_console().print(f"warning: skipped {path}: {why}", markup=False)
