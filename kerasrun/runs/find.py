"""Find run folders under a runs folder — by name, the newest completed, a config or a folder given on the command line — without importing TensorFlow."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasrun.config.load import load_config
from kerasrun.config.resolved import resolved_dict
from kerasrun.config.schema import Config
from kerasrun.config.urls import url_of
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.files import is_run_folder, is_sweep_folder, read_config_data, trial_folders
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import RUN_FILE
from kerasrun.rundir.liveness import effective_status, resume_blocker, resume_command, status_phrase
from kerasrun.rundir.opened import read_run_info
from kerasrun.rundir.remote import local_runs_listing

Unreadable = list[tuple[Path, str]]


def runs_named(runs_dir: Path, name: str) -> tuple[list[tuple[Path, dict[str, Any]]], Unreadable]:
    """Run folders under `runs_dir` whose run.json names exactly `name`, oldest first, and run.json files that can't be read."""
    found: list[tuple[str, Path, dict[str, Any]]] = []
    unreadable: Unreadable = []
    base = Path(runs_dir)
    for path in sorted(base.glob("*/" + RUN_FILE)) if base.is_dir() else []:
        try:
            info = read_json(path)
        except RunFileError as exc:
            unreadable.append((path, str(exc)))
            continue
        if isinstance(info, dict) and info.get("name") == name:
            found.append((str(info.get("started", "")), path.parent, info))
    found.sort(key=lambda item: (item[0], item[1].name))
    return [(run_dir, info) for _, run_dir, info in found], unreadable


def run_names(runs_dir: Path) -> list[str]:
    """The names of the runs under `runs_dir` (for a "did you mean")."""
    names = set()
    for path in Path(runs_dir).glob("*/" + RUN_FILE) if Path(runs_dir).is_dir() else []:
        try:
            info = read_json(path)
        except RunFileError:
            continue
        if isinstance(info, dict) and isinstance(info.get("name"), str):
            names.add(info["name"])
    return sorted(names)


def newest_completed(runs_dir: Path, name: str) -> tuple[Path | None, Unreadable]:
    """The newest completed run named `name` under `runs_dir` (None if there is none), and the unreadable run.json files."""
    runs, unreadable = runs_named(runs_dir, name)
    completed = [run_dir for run_dir, info in runs if effective_status(info, run_dir) == "completed"]
    return (completed[-1] if completed else None), unreadable


def find_run_dir(target: Path, runs_dir: Path | None = None, overrides: list[str] | None = None) -> tuple[Path, Unreadable, str | None]:
    """A run folder itself, or — given a config — the newest completed run of exactly that config's name.

    Also the unreadable run.json files passed over, and a note when the run found by name was trained from another config.
    """
    target = Path(target)
    if target.is_dir():
        if overrides or runs_dir:
            raise ConfigError(
                Problem(key="--set/--runs-dir", message="apply to a CONFIG; a run folder is evaluated as it was trained", file=str(target))
            )
        read_run_info(target)
        return target, [], None
    config = load_config(target, overrides)
    base = Path(runs_dir or config.output.runs_dir)
    runs, unreadable = runs_named(base, config.name)
    completed = [run_dir for run_dir, info in runs if effective_status(info, run_dir) == "completed"]
    if not completed:
        hint = "train it first: kerasrun train " + str(target)
        if runs:  # runs of that name exist, none completed: the newest may be resumable
            newest, info = runs[-1]
            blocker = resume_blocker(newest, info)
            hint = f"the newest, {newest}, {status_phrase(effective_status(info, newest))}" + (
                f": {resume_command(newest, info)} continues it" if blocker is None else f" and can't be resumed ({blocker})"
            )
        raise ConfigError(Problem(key="name", message=f"no completed run named `{config.name}` under {base}", file=str(target), hint=hint))
    return completed[-1], unreadable, other_config_note(config, target, completed[-1])


WHERE_IT_RAN = ("output", "runtime")  # sections a run may be given other values of (--runs-dir, --device) for the same experiment


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two plain-data configs differ (a list counts as one value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [key for name in dict.fromkeys([*a, *b]) for key in differing_keys(a.get(name), b.get(name), f"{prefix}{name}.")]
    return [] if a == b else [prefix.rstrip(".")]


def other_config_note(config: Config, config_path: Path, run_dir: Path) -> str | None:
    """A note when the run found for a config by its name was trained from another config (another file of the same name, or edited since).

    The run's config.yaml is compared with the config as `train` would record it, but for where it ran
    (WHERE_IT_RAN) and the keras source's data folder; an unreadable config.yaml is the run's own problem.
    """
    try:
        recorded = read_config_data(run_dir)
    except (RunFileError, ConfigError):
        return None
    current = resolved_dict(config)
    for side in (recorded, current):
        for section in WHERE_IT_RAN:
            side.pop(section, None)
        if isinstance(side.get("data"), dict):
            side["data"].pop("dir", None)  # filled in with where the data was found
    keys = differing_keys(recorded, current)
    if not keys:
        return None
    shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    return f"note: {run_dir.name}, the newest completed run named `{config.name}`, was trained from another config than {config_path}: they differ at {shown}"


def find_run_dirs(
    targets: list[Path], runs_dir: Path | None, warn: Callable[[Unreadable], object], note: Callable[[str], object] = lambda text: None
) -> list[Path]:
    """Run folders as `evaluate` finds them: a folder itself, or a config's newest completed run (under `runs_dir`).

    `warn` hears of each target's unreadable run.json files as soon as that target is found, `note` of a
    run found for a config by its name that was trained from another config. A run
    folder given itself whose files can't be read is returned all the same: `compare` and `plot`
    show it as unreadable and go on with the rest.
    """
    found = []
    for target in targets:
        if url := url_of(target):  # a run or sweep folder on gs://…: its JSON and config, copied (TensorFlow imported only now)
            target = local_runs_listing(url, "RUN_DIR", top=True)
        if target.is_dir() and is_sweep_folder(target) and not is_run_folder(target):
            found += trial_folders(target)  # a sweep: its trials, whichever machine trained them
            continue
        if target.is_dir():
            with contextlib.suppress(RunFileError):  # a run folder (it has run.json and config.yaml) whose run.json can't be read
                read_run_info(target)
            found.append(target)
            continue
        run_dir, unreadable, other = find_run_dir(target, runs_dir)
        warn(unreadable)
        if other:
            note(other)
        found.append(run_dir)
    return found
