"""`kerasrun sweep --collect SWEEP_DIR`: sweep.json and the ranking from trials a scheduler ran (`--print-commands`).

Each task of a Slurm array or a Kubernetes Indexed Job ran `kerasrun train … --runs-dir SWEEP_DIR
--name trial-NNN`; this reads their run folders (no Optuna, no TensorFlow): the trial number from the
run's name, its values from the `--set` items of its command, its status as `kerasrun runs` shows it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.files import best_epoch, trial_folders
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import HISTORY_FILE, METRICS_FILE, RUN_FILE
from kerasrun.rundir.liveness import effective_status
from kerasrun.rundir.record import now_iso
from kerasrun.sweep.metric import is_loss, unknown_metric
from kerasrun.sweep.record import PENDING, RUNNING, SweepRecord, Trial, params_of

TRIAL_NAME = re.compile(r"^trial-(\d+)$")


def collect_sweep(folder: Path, metric: str, mode: str) -> SweepRecord:
    """Read the trial run folders under `folder`, rank them by `metric`, and write sweep.json; ConfigError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(Problem(key="", file="--collect", message=f"{folder} is not a folder"))
    if mode == "auto":  # without TensorFlow no model tells a metric's direction: only a loss's is known from its name
        if not is_loss(metric):
            raise ConfigError(
                Problem(
                    key="",
                    file="--metric",
                    message=f"--collect can't tell whether `{metric}` is better low or high (it builds no model to ask Keras)",
                    hint="give --mode max or --mode min",
                )
            )
        mode = "min"
    newest: dict[int, Trial] = {}
    for run_dir in trial_folders(folder):  # in name order, which starts with the start time
        trial = read_trial(run_dir, metric, mode)
        if trial is not None:
            newest[trial.index] = trial  # a task the scheduler restarted trained its trial again in a newer folder
    trials = [newest[index] for index in sorted(newest)]
    if not trials:
        raise ConfigError(
            Problem(key="", file=str(folder), message="holds no trial run folder (runs named trial-NNN, as --print-commands names them)")
        )
    check_columns(folder, trials, metric)
    commands = [read_json(folder / str(t.run_dir) / RUN_FILE).get("command") for t in trials[:1]]
    config = str(commands[0][2]) if commands and isinstance(commands[0], list) and len(commands[0]) > 2 else ""
    keys = sorted({o.partition("=")[0] for t in trials for o in t.overrides})
    values = {key: list({repr(t.params.get(key)): t.params.get(key) for t in trials}.values()) for key in keys}
    # A --set every trial has alike (train.epochs=2 on each task) is the sweep's setting, not a searched key.
    searched = [key for key in keys if len(values[key]) > 1] or keys
    space = [{"key": key, "kind": "collected", "values": sorted(values[key], key=repr)} for key in searched]
    record = SweepRecord(folder, config, "collected", metric, mode, space, {"planned": len(trials)})
    record.trials = trials
    record.status = RUNNING if any(t.status == RUNNING for t in trials) else "completed"
    record.ended = None if record.status == RUNNING else now_iso()
    record.save()
    return record


def check_columns(folder: Path, trials: list[Trial], metric: str) -> None:
    """The metric must be a column of some trial's history.json (a typo would rank nothing); unchecked when no trial has one."""
    columns: list[str] = []
    for trial in trials:
        try:
            history = read_json(folder / str(trial.run_dir) / HISTORY_FILE)
        except RunFileError:
            continue
        columns += [k for k in history if k != "epoch" and k not in columns] if isinstance(history, dict) else []
    if columns and metric not in columns:
        raise ConfigError(unknown_metric(metric, columns, "logged"))


def read_trial(run_dir: Path, metric: str, mode: str) -> Trial | None:
    """One trial from its run folder (None for a run that is not a named trial, or whose run.json can't be read)."""
    try:
        info = read_json(run_dir / RUN_FILE)
    except RunFileError:
        return None  # `kerasrun runs` lists it as unreadable, with why
    if not isinstance(info, dict):
        return None
    match = TRIAL_NAME.match(str(info.get("name") or ""))
    if match is None:
        return None
    command = info.get("command")
    command = command if isinstance(command, list) else []
    overrides = [str(command[i + 1]) for i, arg in enumerate(command[:-1]) if arg in ("--set", "-s")]
    trial = Trial(int(match.group(1)), overrides, params_of(overrides), status=effective_status(info, run_dir), run_dir=run_dir.name)
    read_results(trial, run_dir, metric, mode)
    return trial


def read_results(trial: Trial, run_dir: Path, metric: str, mode: str) -> None:
    """Fill in a trial's best epoch and value of `metric`, its epochs and its test metrics from its run folder's files."""
    try:
        history = read_json(run_dir / HISTORY_FILE)
    except RunFileError:
        history = {}
    if isinstance(history, dict):
        best = best_epoch(history, metric, mode)
        trial.best_epoch, trial.metric = best if best is not None else (None, None)
        trial.epochs = len(history.get("epoch") or [])
    try:
        metrics = read_json(run_dir / METRICS_FILE)
        trial.test_metrics = metrics if isinstance(metrics, dict) else None
    except RunFileError:
        pass


def completed_since(trial: Trial, sweep_dir: Path, metric: str, mode: str) -> Trial:
    """The trial as its run folder stands when it completed after the sweep left it (a pruned trial `kerasrun resume`d); else as given.

    The study keeps the attempt's outcome (a finished Optuna trial can't change), so its value is read
    from the folder, as --collect reads a scheduler's trials.
    """
    if trial.status in ("completed", RUNNING, PENDING) or not trial.run_dir:
        return trial
    run_dir = sweep_dir / trial.run_dir
    try:
        info = read_json(run_dir / RUN_FILE)
    except RunFileError:
        return trial
    if not isinstance(info, dict) or effective_status(info, run_dir) != "completed":
        return trial
    done = replace(trial, status="completed", error=None)
    read_results(done, run_dir, metric, mode)
    return done
