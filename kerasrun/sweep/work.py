"""Make a sweep (its folder and its study), join one, and work on it: take waiting trials and train them until none is left.

Every process that works on a sweep — the one `kerasrun sweep` started, each of `--jobs J`, the same
command on other machines, `kerasrun sweep --resume` — runs `work_on` against the study in its storage.
A process stays until no trial waits or runs anywhere, failing the trials of dead processes (which
puts them back in the queue), so a trial whose process was killed is finished by another.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasrun.config.urls import url_of
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.files import best_epoch
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import SWEEP_FILE
from kerasrun.rundir.liveness import process_identity
from kerasrun.rundir.record import create_run_dir, now_iso
from kerasrun.sweep import study as studies
from kerasrun.sweep.collect import completed_since
from kerasrun.sweep.record import RUNNING, SweepRecord, Trial, trials_of
from kerasrun.sweep.search import Report, SweepPlan, plan_from_definition, train_command, trial_name
from kerasrun.train.signals import Interrupted, on_forced_exit

POLL_SECONDS = 2.0  # how often a process with nothing to take looks again while other processes' trials run


@dataclass
class Sweep:
    """A sweep folder and its study, as one process works on it."""

    plan: SweepPlan
    path: Path  # the sweep folder
    optuna: Any
    study: Any
    storage: str  # the storage URL or journal file (with any password)
    study_name: str
    command: list[str]
    started: str
    jobs: int = 1
    notes: list[str] = field(default_factory=list)  # for the command to show (a worker process that died)

    def record(self, status: str | None = None) -> SweepRecord:
        """sweep.json's content, from the study: `completed` once no trial waits or runs, else `status` (default running)."""
        frozen = self.study.get_trials(deepcopy=False)
        trials = [completed_since(t, self.path, self.plan.metric, self.plan.mode) for t in trials_of(frozen)]
        waiting, running = studies.unfinished(self.optuna, self.study, frozen)  # an interrupted trial waits too, to be resumed
        if not waiting and not running:
            status = "completed"
        definition = self.plan.definition()
        settings: dict[str, Any] = {
            "planned": self.plan.count,
            "set": self.plan.base_overrides,
            "seed": self.plan.seed,
            "jobs": self.jobs,
            "command": self.command,
            "storage": studies.shown_url(self.storage),
            "study_name": self.study_name,
            "workers": studies.workers_of(self.study),
        }
        if self.plan.method == "optuna":
            settings.update({key: definition[key] for key in ("sampler", "pruner", "prune_startup", "prune_warmup")})
        record = SweepRecord(
            self.path, definition["config"], self.plan.method, self.plan.metric, self.plan.mode, definition["space"], settings
        )
        record.trials, record.status, record.started = trials, status or RUNNING, self.started
        record.ended = now_iso() if record.status != RUNNING else None
        return record

    def save(self, status: str | None = None) -> SweepRecord:
        """Rewrite sweep.json from the study (atomically: several processes may write it, each a whole snapshot)."""
        record = self.record(status)
        record.save()
        return record


def sweep_folder(plan: SweepPlan, study_name: str | None) -> tuple[Path, bool]:
    """The sweep folder: `<runs dir>/<study name>` when one is given (the same on every machine), else a new timestamped one."""
    from kerasrun.config.load import load_config

    given = plan.runs_dir or load_config(plan.config_path, plan.base_overrides).output.runs_dir
    if url := url_of(given):  # its journal needs a file lock and its trials a live status: a sweep folder is local
        key = "--runs-dir" if plan.runs_dir else "output.runs_dir"
        raise ConfigError(Problem(key=key, message=f"{url}: a sweep folder must be local", hint="sweep into a local runs dir"))
    runs_dir = Path(given)
    if not study_name:
        return create_run_dir(runs_dir, f"{plan.name}-sweep"), True
    folder = runs_dir / study_name
    try:
        folder.mkdir(parents=True)
        return folder, True
    except FileExistsError:
        return folder, False
    except OSError as exc:
        raise ConfigError(Problem(key="output.runs_dir", message=f"cannot make the sweep folder {folder}: {exc.strerror or exc}")) from None


def slots_of(plan: SweepPlan) -> list[dict[str, Any]]:
    """Every trial of the sweep as the study enqueues it: planned ones with their values, Optuna's as empty slots."""
    if plan.method == "optuna":
        return [{"slot": index, "run_dir": trial_name(index)} for index in range(plan.count)]
    return [{"slot": t.index, "run_dir": trial_name(t.index), "overrides": t.overrides} for t in plan.trials]


def start_sweep(plan: SweepPlan, command: list[str], storage: str | None, study_name: str | None, jobs: int = 1) -> tuple[Sweep, bool]:
    """Make the sweep (folder, study, every trial enqueued), or join it when the study of that name exists; (sweep, made here)."""
    optuna = studies.import_optuna()
    folder, new_folder = sweep_folder(plan, study_name)
    made = False
    try:
        url = studies.storage_url(folder, storage)
        name = study_name or folder.name
        check_same_study(folder, url, name)
        store = studies.open_storage(optuna, url)
        study, made = studies.make_or_join(optuna, store, name, plan.definition(), slots_of(plan))
    except BaseException:
        if new_folder:  # nothing of a sweep was made (the study of a failed make is deleted): leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    started = read_started(folder) or now_iso()
    sweep = Sweep(plan, folder, optuna, study, url, name, command, started, jobs)
    sweep.save()  # before any trial: worker processes and `--resume` find the study through it
    return sweep, made


def check_same_study(folder: Path, url: str, name: str) -> None:
    """Refuse a sweep folder whose sweep.json names another storage or study (a node that forgot its --storage)."""
    try:
        record = read_json(folder / SWEEP_FILE)
    except RunFileError:
        return
    if not isinstance(record, dict):
        return
    recorded = (record.get("storage"), record.get("study_name"))
    if recorded != (studies.shown_url(url), name):
        raise ConfigError(
            Problem(
                key="--storage",
                file=str(folder),
                message=f"this sweep folder belongs to the study {recorded[1]!r} in {recorded[0]}, not {name!r} in {studies.shown_url(url)}",
                hint="give the same --storage as the sweep's other processes (sweep.json's `storage`), or another --study-name",
            )
        )


def read_started(folder: Path) -> str | None:
    """When the sweep began, as its sweep.json says (a joining process keeps it)."""
    try:
        record = read_json(folder / SWEEP_FILE)
    except RunFileError:
        return None
    return record.get("started") if isinstance(record, dict) and isinstance(record.get("started"), str) else None


def open_sweep(folder: Path, storage: str | None = None, jobs: int = 1, **settings: Any) -> Sweep:
    """An existing sweep from its folder (`--resume`, a worker process): its sweep.json names the storage and the study."""
    try:
        record = read_json(Path(folder) / SWEEP_FILE)
    except RunFileError as exc:
        raise ConfigError(Problem(key="", file=str(folder), message=f"is not a sweep folder: {exc}")) from None
    if not isinstance(record, dict) or not record.get("study_name"):
        raise ConfigError(Problem(key="", file=str(folder), message="its sweep.json names no study (made by an older kerasrun)"))
    url = storage or str(record.get("storage") or "")
    own_journal = Path(folder) / studies.JOURNAL_FILE
    if not storage and "://" not in url and own_journal.is_file():
        url = str(own_journal.resolve())  # the default storage travels with its folder (moved, copied, mounted elsewhere)
    if "***" in url:
        raise ConfigError(
            Problem(key="--storage", file=str(folder), message="the storage URL has a password: give it again with --storage")
        )
    optuna = studies.import_optuna()
    store = studies.open_storage(optuna, url)
    study = studies.load_joined(optuna, store, str(record["study_name"]))
    plan = plan_from_definition(studies.definition_of(study), jobs=jobs, **settings)
    if changed := plan.config_changes():
        raise ConfigError(
            studies.config_changed(
                str(plan.config_path), changed, str(record["study_name"]), "a new sweep of the edited config (without --resume)"
            )
        )
    command = [str(a) for a in record["command"]] if isinstance(record.get("command"), list) else []
    return Sweep(plan, Path(folder), optuna, study, url, str(record["study_name"]), command, str(record.get("started") or now_iso()), jobs)


def sampler_seed(sweep: Sweep, made: bool, offset: int) -> int:
    """This process's sampler seed: `--seed` for the process that made the sweep (offset by its local job number), else drawn.

    Two processes with one seed and the same history propose the same values; a joining process on
    another machine draws its seed from its host, pid and time, and records it.
    """
    if made:
        return sweep.plan.seed + offset
    me = process_identity()
    digest = hashlib.sha256(f"{sweep.plan.seed}:{me['host']}:{me['pid']}:{time.time_ns()}:{offset}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def with_sampler(sweep: Sweep, seed: int) -> Sweep:
    """The same sweep with its study loaded for this process: its own seeded sampler and the sweep's pruner."""
    from kerasrun.sweep.bayes import make_pruner, make_sampler

    study = sweep.optuna.load_study(
        study_name=sweep.study_name,
        storage=studies.storage_of(sweep.study),
        sampler=make_sampler(sweep.optuna, sweep.plan, seed),
        pruner=make_pruner(sweep.optuna, sweep.plan),
    )
    studies.register_worker(study, seed if sweep.plan.method == "optuna" else None)
    sweep.study = study
    return sweep


def work_on(sweep: Sweep, report: Report) -> None:
    """Take waiting trials and train them in this process until no trial waits or runs in the study; a signal ends it.

    An interrupted trial goes back to the queue (its run folder marked interrupted, with its checkpoint),
    so that the next process to take it — a rerun of the sweep, or another machine — resumes it.
    """
    optuna = sweep.optuna
    while True:
        if studies.fail_stale_trials(optuna, sweep.study, sweep.path):
            sweep.save()  # their trials wait again: the next take (here or elsewhere) resumes them
        trial = studies.take_waiting(optuna, sweep.study)
        if trial is None:
            waiting, running = studies.unfinished(optuna, sweep.study)
            if not waiting and not running:
                return
            time.sleep(POLL_SECONDS)
            continue
        stop = run_taken(sweep, trial, report)
        if stop is not None:
            raise stop


def run_taken(sweep: Sweep, trial: Any, report: Report) -> Interrupted | None:
    """Train one trial this process took, record the outcome in the study and sweep.json; the signal that stopped it.

    A signal anywhere from the take to the outcome's record puts the trial back in the queue, so that
    no trial stays `running` for a process that is gone.
    """
    optuna = sweep.optuna
    try:
        return train_taken(sweep, trial, report)
    except KeyboardInterrupt:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            sweep.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            studies.requeue(optuna, sweep.study, studies.frozen(sweep.study, trial.number))
        raise


def train_taken(sweep: Sweep, trial: Any, report: Report) -> Interrupted | None:
    """The body of run_taken: suggest (Optuna), train or resume, record."""
    from kerasrun.sweep.bayes import PruneOnEpoch, suggest
    from kerasrun.sweep.trial import run_trial

    plan, optuna = sweep.plan, sweep.optuna
    slot = int(trial.user_attrs["slot"])
    overrides = list(trial.user_attrs.get("overrides") or [f"{dim.key}={suggest(trial, dim)}" for dim in plan.dims])
    trial.set_user_attr("overrides", overrides)
    run_dir = sweep.path / trial_name(slot)
    attempts = [t.number for t in sweep.study.get_trials(deepcopy=False) if t.user_attrs.get("slot") == slot]
    report(sweep.save(), Trial(slot, overrides, {}, status=RUNNING, run_dir=run_dir.name, attempts=attempts))
    callbacks = [PruneOnEpoch(trial, plan.metric)] if plan.method == "optuna" else None
    all_overrides = [*plan.base_overrides, *overrides]
    with studies.heartbeat(sweep.study, trial):
        outcome, stop = run_trial(
            plan.config_path,
            all_overrides,
            run_dir,
            plan.runs_dir,
            plan.progress,
            train_command(plan.config_path, all_overrides, plan.runs_dir),
            callbacks,
        )
    best = best_epoch(outcome.history, plan.metric, plan.mode)
    epoch, value = best if best is not None else (None, None)
    attrs = {
        "status": outcome.status,
        "metric": value,
        "best_epoch": epoch,
        "epochs": len(outcome.history.get("epoch") or []),
        "test_metrics": outcome.test_metrics,
        "error": outcome.error,
        "seconds": round(outcome.seconds, 3),
        "run_dir": run_dir.name,  # always: a later attempt (on any host) looks for its folder here
    }
    try:
        for key, attr in attrs.items():
            trial.set_user_attr(key, attr)
        if stop is not None:  # back to the queue, to be resumed from its checkpoint (not counted as a crash retry)
            sweep.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            studies.requeue(optuna, sweep.study, studies.frozen(sweep.study, trial.number))
        elif outcome.status == "pruned":
            sweep.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif outcome.status == "completed" and value is not None:
            sweep.study.tell(trial, value)
        else:
            sweep.study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        # Another process took it for dead (a lost heartbeat) and enqueued it again: that attempt resumes from here.
        sweep.notes.append(f"trial {trial_name(slot)} was taken over by another process while this one trained it")
    record = sweep.save("interrupted" if stop is not None else None)
    report(record, next(t for t in record.trials if t.index == slot))
    return stop


@contextmanager
def recorded_on_exit(sweep: Sweep) -> Iterator[None]:
    """sweep.json says how this process left the sweep: interrupted by a signal (or the watchdog's forced exit), failed, or done."""

    def mark(signum: int) -> None:
        sweep.save(stopped_status(sweep))

    with on_forced_exit(mark):
        try:
            yield
        except KeyboardInterrupt:
            sweep.save(stopped_status(sweep))
            raise
        except BaseException:
            sweep.save("failed")  # e.g. a storage that went away: sweep.json must not stay `running`
            raise
    sweep.save()


def stopped_status(sweep: Sweep) -> str:
    """How a signal to this process leaves the sweep: `interrupted`, unless other processes still train its trials."""
    _, running = studies.unfinished(sweep.optuna, sweep.study)  # this process's own trial went back to the queue
    return RUNNING if running else "interrupted"


def run_sweep(sweep: Sweep, made: bool, report: Report, worker_module: str = "kerasrun.sweep.worker") -> SweepRecord:
    """Work on the sweep in this process, or in `jobs` local processes of the same mechanism; the final record."""
    with recorded_on_exit(sweep):
        if sweep.jobs > 1:
            from kerasrun.sweep.processes import run_processes

            run_processes(sweep, made, worker_module)
        else:
            work_on(with_sampler(sweep, sampler_seed(sweep, made, 0)), report)
    return sweep.record()
