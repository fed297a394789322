"""`kerasrun train`, `resume` and `launch`: a run folder trained, continued, or trained by several local workers."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from kerasrun.cli.options import Progress, SetOption, TrustOption
from kerasrun.cli.render import err_console, json_stdout, print_metrics, report_interrupted, reported_errors, retrained_epochs, say
from kerasrun.train.signals import Interrupted


def run_and_report(start: Any, progress: Progress) -> Any:
    """Run `start(set_run_dir, stdout)` with SIGTERM/SIGHUP handled like Ctrl-C; render errors and interruptions.

    With `--progress json`, `stdout` is where the epochs' JSON lines go; anything else printed meanwhile goes to stderr.
    """
    from kerasrun.train.restart import requeue_slurm_job
    from kerasrun.train.signals import on_forced_exit, signals_raise_interrupted

    run_dir: list[Path] = []

    def report(stopped: Interrupted) -> None:
        report_interrupted(stopped, run_dir[0] if run_dir else None)
        if (requeued := requeue_slurm_job(stopped.signum)) is not None:  # SIGUSR1 in a Slurm job: time is nearly up
            err_console().print(f"note: {requeued}", markup=False)

    with (
        reported_errors(report),
        on_forced_exit(requeue_slurm_job),  # also when the watchdog ends a process stuck in TensorFlow (after the run is marked)
        signals_raise_interrupted(),
        json_stdout(progress == "json") as stdout,
    ):
        result = start(run_dir.append, stdout)
    for warning in result.warnings:
        err_console().print(f"warning: {warning}", markup=False)
    for note in result.notes:
        err_console().print(f"note: {note}", markup=False)
    if result.metrics and progress != "none":
        print_metrics(f"test metrics ({result.run_dir.name})", result.metrics, as_json=progress == "json")
    return result


def check_runs_dir(config: Any, runs_dir: Path | None) -> None:
    """ConfigError naming --runs-dir or output.runs_dir when no run folder can be made there: before anything trains."""
    from kerasrun.errors import ConfigError, Problem
    from kerasrun.rundir.record import runs_dir_problem

    why = runs_dir_problem(runs_dir if runs_dir is not None else Path(config.output.runs_dir))
    if why is None:
        return
    hint = "give a folder (it is made if missing)"
    if runs_dir is not None:
        raise ConfigError(Problem(key="--runs-dir", message=why, hint=hint))
    raise ConfigError(config.problem(("output", "runs_dir"), why, hint))


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
    progress: Annotated[Progress, typer.Option("--progress", help="auto: Rich on a terminal, plain lines otherwise.")] = "auto",
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | gpu | gpu:N (overrides runtime.device).")] = None,
    resume_existing: Annotated[
        bool,
        typer.Option(
            "--resume-existing",
            help="Restart-safe: train into RUNS_DIR/NAME exactly; resume it if interrupted or crashed, report it if completed.",
        ),
    ] = False,
) -> None:
    """Build the model, train it, and write a new run folder (with --resume-existing: the same one, whenever run again)."""
    from kerasrun.config.load import load_config, shrink_for_smoke
    from kerasrun.config.urls import url_of

    values: dict[str, Any] = {"name": name} if name is not None else {}  # as typed: `--name 2024` is a name, not a number
    if init_from is not None:  # the path replaces path/run; the config's skip list stays
        values["model.init_from.path"] = url_of(init_from) or str(init_from.resolve())  # a URL is no local path
        values["model.init_from.run"] = None
    if device is not None:
        values["runtime.device"] = device
    scratch: list[Path] = []  # temporary folders to remove at the end

    def start(set_run_dir: Any, stdout: TextIO) -> Any:
        config = load_config(config_path, list(set_ or []), values)
        if smoke:
            config = shrink_for_smoke(config)
        from kerasrun.rundir.record import create_run_dir
        from kerasrun.rundir.remote import Mirror, check_config_urls, new_remote_run_dir, url_of
        from kerasrun.rundir.scratch import SMOKE_PREFIX, WORKER_PREFIX, make_scratch
        from kerasrun.train.experiment import prepare_experiment
        from kerasrun.train.run import run_experiment

        check_config_urls(config, runs_dir)  # a scheme TensorFlow has no filesystem for, or missing remote data: exit 2, nothing made
        remote = url_of(runs_dir) if runs_dir is not None else url_of(config.output.runs_dir)
        if remote is None and (runs_dir is not None or not smoke):  # a smoke run without --runs-dir goes to a temporary folder
            check_runs_dir(config, runs_dir)
        restart = find_restart(config, runs_dir, resume_existing, smoke)
        if restart is not None and restart.note:
            typer.echo(f"note: {restart.note}", err=True)
        if restart is not None and restart.action == "completed":
            say(f"{restart.run_dir} is completed: nothing to do", progress)
            return Unchanged(restart.run_dir)
        if restart is not None and restart.action == "resume":
            assert restart.plan is not None
            return resume_run(restart.plan, restart.run_dir, set_run_dir, stdout, progress, scratch)
        experiment = prepare_experiment(config, runs_dir)
        base, shown = runs_dir, progress
        if not experiment.placement.is_chief:  # multi-worker: only the chief keeps a run folder
            base, shown, remote = make_scratch(WORKER_PREFIX), "none", None  # the dead workers' leftovers are removed first
            scratch.append(base)
        elif base is None and smoke:
            base = make_scratch(SMOKE_PREFIX)
            scratch.append(base)
        extra: list[Any] = []
        if restart is not None and resume_existing and experiment.placement.is_chief:  # the one folder this command always uses
            run_dir = restart.run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
        elif remote is not None:  # trained in a local mirror, published through tf.io.gfile (rundir.remote)
            from kerasrun.train.callbacks.publish import PublishRunFolder

            run_dir, url = new_remote_run_dir(remote, config.name)
            mirrors.append(Mirror(run_dir, url).__enter__())
            extra.append(PublishRunFolder(mirrors[-1]))
        else:
            run_dir = create_run_dir(base or Path(config.output.runs_dir), config.name)
        set_run_dir(run_dir)
        where = f"{url} (written through {run_dir})" if remote is not None else str(run_dir)
        say(f"run folder: {where}  (device {experiment.placement.device}, {experiment.placement.replicas} replica(s))", progress)
        for note in experiment.data.notes:
            typer.echo(f"note: {note}", err=True)
        if experiment.trainer.name == "fit" and experiment.trainer.chosen_because:  # auto fell back from the faster loop
            typer.echo(f"note: train.loop: fit ({experiment.trainer.chosen_because})", err=True)
        for warning in [*experiment.notes, *([experiment.memory_warning] if experiment.memory_warning else [])]:
            typer.echo(f"warning: {warning}", err=True)
        if experiment.init_from:
            loaded = experiment.init_from
            parts = [f"loaded {', '.join(loaded['loaded']) or 'nothing'}"]
            parts += [
                f"{what} {', '.join(loaded[key])}" for key, what in (("skipped", "kept as built"), ("left_out", "left out")) if loaded[key]
            ]
            say(f"weights from {loaded['path']}: " + "; ".join(parts), progress)
        return run_experiment(
            experiment, run_dir, shown, command=["kerasrun", *sys.argv[1:]], progress_stream=stdout, extra_callbacks=extra
        )

    mirrors: list[Any] = []  # a remote run folder's local mirror: published once more and removed at the end
    try:
        result = run_and_report(start, progress)
    finally:
        close_mirrors(mirrors)
        remove_scratch(scratch)  # a smoke run's or a worker's folder only held what nobody keeps
    if not isinstance(result, Unchanged):
        say(f"done: {shown_name(result.run_dir)}" + (" (temporary folder removed)" if smoke and scratch else ""), progress)


def find_restart(config: Any, runs_dir: Path | None, resume_existing: bool, smoke: bool) -> Any:
    """With --resume-existing, or in a requeued Slurm job, what to do with the run's folder (train.restart); None: a new folder."""
    import os

    from kerasrun.config.urls import url_of
    from kerasrun.errors import ConfigError, Problem
    from kerasrun.train.restart import find_job_run, named_run_dir, plan_restart

    base = runs_dir if runs_dir is not None else Path(config.output.runs_dir)
    remote = url_of(runs_dir) if runs_dir is not None else url_of(config.output.runs_dir)
    if resume_existing:
        if remote is not None:  # its folder would be a local mirror made anew each time: nothing to find again
            raise ConfigError(
                Problem(
                    key="--resume-existing",
                    message=f"a restart-safe run needs a local or mounted runs dir, not {remote}",
                    hint="mount the bucket (gcsfuse, s3fs) and give its local path",
                )
            )
        if smoke:
            raise ConfigError(
                Problem(key="--resume-existing", message="a smoke run goes to a temporary folder; it has no folder to resume")
            )
        return plan_restart(config, named_run_dir(base, config.name))
    job_id, restarts = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_RESTART_COUNT", "0")
    requeued = bool(job_id) and restarts.isdigit() and int(restarts) > 0  # Slurm counts the job's requeues
    found = find_job_run(base, config, job_id) if requeued and job_id and not smoke and remote is None else None
    if found is None:
        return None
    restart = plan_restart(config, found)
    return restart if restart.action != "start" else None  # an attempt with nothing to continue: a new folder


@dataclass
class Unchanged:
    """The result of a restart-safe train whose run had completed already: nothing trained, nothing written."""

    run_dir: Path
    status: str = "completed"
    metrics: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resume_run(
    plan: Any, run_dir: Path, set_run_dir: Any, stdout: TextIO, progress: Progress, scratch: list[Path], extra: list[Any] | None = None
) -> Any:
    """Continue `plan`'s run in its own folder (train.resume's plan): what `kerasrun resume` and a restart-safe train both do.

    A multi-worker run's other worker restores the chief's checkpoint and trains in a scratch folder (added to `scratch`);
    `extra` callbacks (a remote run folder's publisher) run on the chief.
    """
    from kerasrun.rundir.scratch import WORKER_PREFIX, make_scratch
    from kerasrun.train.checkpoint import uncaptured
    from kerasrun.train.experiment import prepare_experiment
    from kerasrun.train.resume import resume_folder
    from kerasrun.train.run import run_experiment

    experiment = prepare_experiment(plan.config, initial_weights=False)
    folder = resume_folder(run_dir, plan, experiment.placement)
    if folder is None:  # a multi-worker run's other worker: it restored the chief's checkpoint and trains in a folder of its own
        scratch.append(make_scratch(WORKER_PREFIX))
        folder = scratch[-1] / run_dir.name
        folder.mkdir()
    set_run_dir(run_dir)
    where = f"at step {plan.start_step} of epoch {plan.state.epoch + 1}" if plan.start_step else f"after epoch {plan.state.epoch}"
    say(f"resuming {shown_name(run_dir)} {where} of {plan.config.train.epochs}", progress)
    if experiment.memory_warning:
        err_console().print(f"warning: {experiment.memory_warning}", markup=False)
    for missing in uncaptured(plan.state):
        err_console().print(f"warning: {missing}", markup=False)
    if note := retrained_epochs(plan.state.epoch, plan.retrained):
        err_console().print(f"note: {note}", markup=False)
    shown = progress if experiment.placement.is_chief else "none"
    return run_experiment(
        experiment,
        folder,
        shown,
        command=["kerasrun", *sys.argv[1:]],
        resume=plan,
        progress_stream=stdout,
        extra_callbacks=(extra or []) if experiment.placement.is_chief else [],
    )


def close_mirrors(mirrors: list[Any]) -> None:
    """Publish each remote run folder's last files and remove its local mirror; a store that can't be reached is said, not raised."""
    for mirror in mirrors:
        try:
            mirror.__exit__(None, None, None)
            if mirror.failures:  # all sent in the end: say the store was out of reach meanwhile
                err_console().print(
                    f"warning: publishing to {mirror.url} failed {len(mirror.failures)} time(s), last: {mirror.failures[-1]}", markup=False
                )
        except Exception as exc:
            err_console().print(f"error: could not publish {mirror.local} to {mirror.url} (the local copy is kept): {exc}", markup=False)


def shown_name(run_dir: Path) -> str:
    """A run folder as the user knows it: a remote one by its URL."""
    from kerasrun.rundir.remote import shown

    return shown(run_dir)


def resume(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run folder to continue.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="train.epochs=N to train on past the planned epochs (also runtime.device, output.checkpoint)."),
    ] = None,
    trust: TrustOption = False,
    progress: Annotated[Progress, typer.Option("--progress", help="auto: Rich on a terminal, plain lines otherwise.")] = "auto",
) -> None:
    """Continue an interrupted, crashed or completed run in its own folder, from its newest checkpoint.

    A multi-worker run that `kerasrun launch` trained is resumed by as many local workers again; on a
    cluster, every worker runs this same command with its own TF_CONFIG.
    """
    from kerasrun.train.resume import relaunch_count

    if workers := relaunch_count(run_dir):
        from kerasrun.train.resume import check_relaunch

        command = ["resume", str(run_dir), "--progress", progress, *(arg for s in set_ or [] for arg in ("--set", s))]
        launched(
            command + (["--trust"] if trust else []), workers, 24 * 3600, run_dir, lambda: check_relaunch(run_dir, list(set_ or []), trust)
        )
    scratch: list[Path] = []

    mirrors: list[Any] = []  # a remote run folder is resumed in a local mirror (rundir.remote), published as it trains
    extra: list[Any] = []

    def start(set_run_dir: Any, stdout: TextIO) -> Any:
        from kerasrun.rundir.remote import Mirror, local_run_dir, url_of
        from kerasrun.train.resume import load_for_resume

        nonlocal run_dir
        if url := url_of(run_dir):
            from kerasrun.train.callbacks.publish import PublishRunFolder

            run_dir = local_run_dir(url, "RUN_DIR")
            plan = load_for_resume(run_dir, list(set_ or []), trust)  # refused (alive elsewhere, …) before anything is published
            mirror = Mirror(run_dir, url)
            mirror.sent = mirror.stamps()  # what came from the store is there already
            mirrors.append(mirror.__enter__())
            extra.append(PublishRunFolder(mirror))
        else:
            plan = load_for_resume(run_dir, list(set_ or []), trust)
        return resume_run(plan, run_dir, set_run_dir, stdout, progress, scratch, extra)

    try:
        run_and_report(start, progress)
    finally:
        close_mirrors(mirrors)
        remove_scratch(scratch)
    say(f"done: {shown_name(run_dir)}", progress)  # the run's own folder (a worker trained in a scratch copy), by its URL if remote
    from kerasrun.rundir.files import stale_exports

    if stale := stale_exports(Path(run_dir)):  # a remote run's mirror holds no export/
        say(
            f"note: {', '.join(stale)} still hold{'s' if len(stale) == 1 else ''} the model from before this resume: run `kerasrun export` again",
            progress,
        )


def launch(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="Experiment YAML file.")],
    workers: Annotated[int, typer.Option("--workers", "-n", min=1, help="Worker processes on 127.0.0.1.")] = 2,
    set_: SetOption = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where the chief's run folder goes.")] = None,
    progress: Annotated[Progress, typer.Option("--progress", help="The chief's progress display.")] = "auto",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before the workers are stopped.")] = 24 * 3600,
) -> None:
    """Train with runtime.strategy=multi_worker in N local processes (TF_CONFIG set for each)."""
    from kerasrun.config.load import load_config

    args = ["train", str(config_path), "--progress", progress, *(arg for s in set_ or [] for arg in ("--set", s))]
    if runs_dir:
        args += ["--runs-dir", str(runs_dir)]
    # A bad config fails in the launcher, once, not in every worker.
    launched([*args, "--set", "runtime.strategy=multi_worker"], workers, timeout, None, lambda: load_config(config_path, list(set_ or [])))


def launched(command: list[str], workers: int, timeout: float, run_dir: Path | None, check: Any) -> None:
    """`kerasrun COMMAND` in `workers` local processes after `check()` passed; exits with the chief's code."""
    from kerasrun.train.launch import launch_workers

    def passed_on(stopped: Interrupted) -> None:
        err_console().print(f"interrupted ({stopped.name}); passed it on to the workers, which have stopped", markup=False)
        for note in stopped.notes:
            err_console().print(f"note: {note}", markup=False)

    with reported_errors(passed_on):
        check()
        code = launch_workers(command, workers, timeout, run_dir)
    raise typer.Exit(code)


def remove_scratch(folders: list[Path]) -> None:
    """Remove this process's scratch folders (a worker's, a smoke run's)."""
    from kerasrun.rundir.scratch import remove_scratch as remove

    for folder in folders:
        remove(folder)


COMMANDS = {"train": train, "resume": resume, "launch": launch}  # name: function, in `--help` order
