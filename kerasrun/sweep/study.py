"""A sweep's Optuna study in a storage: made once, joined by every process that works on it; its trials are the queue.

Every trial of a sweep is enqueued when the study is made — grid and random trials with their values,
Optuna trials as empty slots whose values the sampler picks when a process takes one — so the budget
is the queue: taking a waiting trial is one atomic state change in the storage (what `Study.ask` does
first), and no two processes, on one machine or many, ever train the same trial. A trial whose
process died is failed and enqueued again by Optuna's `RetryFailedTrialCallback`, keeping its slot
and run folder, and the process that takes it resumes it from its checkpoint. RDB storages detect a
dead process by Optuna's heartbeat; every storage also by the trial's own run folder (its lock on this
host, run.json's heartbeat on another).
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, Problem, first_line, joined
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import RUN_FILE
from kerasrun.rundir.liveness import STALE_AFTER_SECONDS, effective_status, process_alive, process_identity, run_dir_locked
from kerasrun.rundir.record import now_iso
from kerasrun.sweep.search import differing_keys

JOURNAL_FILE = "study.journal"  # the default storage: Optuna's journal file, in the sweep folder (documented as safe on NFS)
DEFINITION_ATTR = "kerasrun_sweep"  # the study's user attr holding what the sweep is (config, space, metric, budget)
READY_ATTR = "kerasrun_ready"  # set once every trial is enqueued: a process joining earlier waits for it
WORKER_PREFIX = "kerasrun_worker:"  # one study user attr per process that worked on the sweep
HEARTBEAT_INTERVAL = 10  # seconds between a trial's heartbeats in an RDB storage (Optuna's heartbeat)
# An RDB trial without a heartbeat for this long belongs to a dead process: longer than run.json's STALE_AFTER_SECONDS,
# so that by then its run folder counts as crashed too and the next attempt can resume it.
GRACE_PERIOD = 150
MAX_RETRY = 3  # a trial whose process dies this often (e.g. killed for memory each time) stays failed
SETUP_GRACE_SECONDS = 900.0  # a trial taken on another host with no run folder yet: its data may take this long to load
JOIN_WAIT_SECONDS = 120.0  # how long a joining process waits for the maker to enqueue the trials
MATCHING = ("config", "method", "metric", "mode", "space", "set", "planned")  # what a joining command must share with the study


def import_optuna() -> Any:
    """Optuna, or a ConfigError saying how to install it (every sweep is an Optuna study)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            Problem(key="", message="kerasrun sweep needs the optuna package", file="sweep", hint="pip install optuna")
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats, fail_stale_trials and the retry callback are marked experimental (since Optuna 2.9/3.0); kerasrun pins the range
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(sweep_dir: Path, given: str | None) -> str:
    """The storage as sweep.json records it: the default journal file, a journal file path made absolute, or a URL."""
    if not given:
        return str((sweep_dir / JOURNAL_FILE).resolve())
    if "://" in given:
        return given
    return str(Path(given).expanduser().resolve())


def shown_url(url: str) -> str:
    """The storage URL without its password (sweep.json and the output show this one), as SQLAlchemy parses it."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not an SQLAlchemy URL: hide whatever stands between `user:` and the last `@`
        return re.sub(r"(://[^:/@]+):.*@", r"\1:***@", url)


def open_storage(optuna: Any, url: str) -> Any:
    """The Optuna storage: a journal file for a path; an RDB storage (with heartbeats) for a database URL."""
    try:
        if "://" not in url:
            from optuna.storages.journal import JournalFileBackend

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        return open_rdb(optuna, url)
    except ConfigError:
        raise
    except Exception as exc:  # a bad URL, a server that is down, a missing driver: the user's to fix
        raise ConfigError(
            Problem(
                key="",
                file="--storage",
                message=f"cannot open the Optuna storage {shown_url(url)}: {type(exc).__name__}: {first_line(exc)}",
            )
        ) from None


SCHEMA_RACE = ("duplicate key", "already exists")  # two processes creating Optuna's tables in a new database at once
SCHEMA_ATTEMPTS = 5


def open_rdb(optuna: Any, url: str) -> Any:
    """An RDB storage with heartbeats; retried when another process is creating Optuna's tables in the same new database."""
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                **{stale_callback_argument(optuna): retry_callback(optuna)},
                engine_kwargs={"pool_pre_ping": True},
            )
        except Exception as exc:
            if attempt == SCHEMA_ATTEMPTS - 1 or not any(text in str(exc) for text in SCHEMA_RACE):
                raise
            time.sleep(0.5 * (attempt + 1))  # the other process's CREATE TABLEs are done by then; the next attempt finds them
    raise AssertionError("unreachable")


def stale_callback_argument(optuna: Any) -> str:
    """RDBStorage's argument for the heartbeat-stale callback: renamed in Optuna 4.9 (`failed_trial_callback` before)."""
    import inspect

    parameters = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters else "failed_trial_callback"


def retry_callback(optuna: Any) -> Any:
    """Optuna's callback that enqueues a dead process's trial again with its values, user attrs and reported epochs.

    The dead process's `worker` attr is left out: the copy belongs to whoever takes it next.
    """
    optuna_retry = retry_class(optuna)(max_retry=MAX_RETRY, inherit_intermediate_values=True)

    def retry(study: Any, trial: Any) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {key: value for key, value in trial.user_attrs.items() if key != "worker"}
        optuna_retry(study, trial)

    return retry


def requeue(optuna: Any, study: Any, trial: Any) -> None:
    """Enqueue an interrupted trial again (values, user attrs, reported epochs), without counting it as a crash retry."""
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={key: value for key, value in trial.user_attrs.items() if key != "worker"},
            system_attrs=trial.system_attrs,
            intermediate_values=trial.intermediate_values,
        )
    )


def retry_class(optuna: Any) -> Any:
    """RetryHeartbeatStaleTrialCallback (named RetryFailedTrialCallback before Optuna 4.9, deprecated there)."""
    return getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback


def make_or_join(optuna: Any, storage: Any, name: str, definition: dict[str, Any], slots: list[dict[str, Any]]) -> tuple[Any, bool]:
    """Make the study and enqueue every trial, or join the study of that name; (study, made here)."""
    direction = "minimize" if definition["mode"] == "min" else "maximize"
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name)
        check_joined(study, definition, name)
        return study, False
    try:
        study.set_user_attr(DEFINITION_ATTR, definition)
        for slot in slots:
            study.enqueue_trial({}, user_attrs=slot)
        study.set_user_attr(READY_ATTR, True)
    except BaseException:  # stopped while enqueueing: a study never ready could not be joined or resumed
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=name, storage=storage)
        raise
    return study, True


def load_joined(optuna: Any, storage: Any, name: str) -> Any:
    """An existing sweep's study (resume, a worker process), once its maker has enqueued every trial."""
    try:
        study = optuna.load_study(storage=storage, study_name=name)
    except KeyError:
        raise ConfigError(Problem(key="", file="--study-name", message=f"the storage has no study named {name!r}")) from None
    check_joined(study, None, name)
    return study


def check_joined(study: Any, definition: dict[str, Any] | None, name: str) -> None:
    """Wait until the study is ready; refuse a study of another sweep (a different config, space, metric or budget)."""
    deadline = time.monotonic() + JOIN_WAIT_SECONDS
    while not study.user_attrs.get(READY_ATTR):
        if DEFINITION_ATTR not in study.user_attrs and time.monotonic() > deadline:
            raise ConfigError(Problem(key="", file="--study-name", message=f"the study {name!r} is not a kerasrun sweep"))
        if time.monotonic() > deadline:
            raise ConfigError(Problem(key="", file="--study-name", message=f"the study {name!r} never finished enqueueing its trials"))
        time.sleep(0.5)
    if definition is None:
        return
    stored = study.user_attrs[DEFINITION_ATTR]
    differ = [key for key in MATCHING if stored.get(key) != definition.get(key)]
    if differ:
        raise ConfigError(
            Problem(
                key="",
                file="--study-name",
                message=f"the study {name!r} in this storage is another sweep: its {joined(differ)} {'differs' if len(differ) == 1 else 'differ'} from this command's",
                hint="give another --study-name, or the same search as the study's first command (sweep.json's `command`)",
            )
        )
    recorded, now = stored.get("resolved"), definition.get("resolved")  # None: a sweep made by an older kerasrun recorded none
    if recorded is not None and now is not None and (changed := differing_keys(recorded, now)):
        raise ConfigError(
            config_changed(str(definition["config"]), changed, name, "a new sweep of the edited config: give another --study-name")
        )


def config_changed(config: str, keys: list[str], name: str, instead: str) -> Problem:
    """The refusal to train a sweep's remaining trials with a config that changed since the sweep started."""
    shown = joined(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    return Problem(
        key="",
        file=config,
        message=f"changed since the sweep {name!r} started: {shown} {'differs' if len(keys) == 1 else 'differ'}, and its remaining trials would train with the new values",
        hint=f"restore the file as it was when the sweep started to continue it (started trials keep their own config), or start {instead}",
    )


def definition_of(study: Any) -> dict[str, Any]:
    """What the study's sweep is, as its maker stored it."""
    return dict(study.user_attrs[DEFINITION_ATTR])


def register_worker(study: Any, sampler_seed: int | None) -> None:
    """Record this process in the study (sweep.json lists every process that worked on the sweep)."""
    me = process_identity()
    study.set_user_attr(f"{WORKER_PREFIX}{me['host']}:{me['pid']}", {**me, "sampler_seed": sampler_seed, "started": now_iso()})


def workers_of(study: Any) -> list[dict[str, Any]]:
    """Every process that worked on the sweep, in the order they joined."""
    found = [value for key, value in study.user_attrs.items() if key.startswith(WORKER_PREFIX) and isinstance(value, dict)]
    return sorted(found, key=lambda w: (str(w.get("started")), str(w.get("host")), int(w.get("pid") or 0)))


def take_waiting(optuna: Any, study: Any) -> Any | None:
    """Take one waiting trial of the study for this process (atomic in the storage), or None when none waits."""
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                continue  # another process took it first
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        trial = optuna.trial.Trial(study, trial_id)
        trial.set_user_attr("worker", process_identity())
        return trial
    return None


def storage_of(study: Any) -> Any:
    """The study's storage object (Optuna keeps it private; `optuna.storages.fail_stale_trials` reads it the same way)."""
    return study._storage


def frozen(study: Any, number: int) -> Any:
    """The study's trial with this number, as stored now."""
    return storage_of(study).get_trial(trial_id_of(study, number))


def trial_id_of(study: Any, number: int) -> int:
    """The storage's id of the study's trial with this number."""
    storage = storage_of(study)
    return int(storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number))


def fail_stale_trials(optuna: Any, study: Any, sweep_dir: Path) -> list[int]:
    """Fail the running trials whose process is gone and enqueue them again; their numbers.

    Optuna's heartbeat covers RDB storages; the trial's run folder covers every storage (on this host its
    lock is released by the kernel when the process dies; from another host run.json's heartbeat ages).
    """
    optuna.storages.fail_stale_trials(study)
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in storage.get_all_trials(study_id, deepcopy=True, states=(optuna.trial.TrialState.RUNNING,)):
        if not trial_process_gone(trial, sweep_dir):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "status", "crashed")  # while it still runs: a finished trial is read-only
            if not storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process failed it first
        retry_callback(optuna)(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


def trial_process_gone(trial: Any, sweep_dir: Path) -> bool:
    """Whether the process that took a running trial has died (a live or unknown one is left alone).

    Only a run.json written by that process (its host and pid) tells about it: the folder may still
    hold an earlier attempt's. On this host the folder's lock and the process itself tell; from
    another host run.json's heartbeat, or, before it made its run folder, the time since it took the trial.
    """
    me = process_identity()
    worker = trial.user_attrs.get("worker")
    started = trial.datetime_start
    age = (datetime.now(timezone.utc) - started.astimezone(timezone.utc)).total_seconds() if started else 0.0
    if not isinstance(worker, dict) or not isinstance(worker.get("pid"), int):
        return age > STALE_AFTER_SECONDS  # taken, but its taker never wrote who it is: it died in between
    run_dir = sweep_dir / str(trial.user_attrs.get("run_dir") or "")
    try:
        info = read_json(run_dir / RUN_FILE)
    except RunFileError:
        info = None
    own = isinstance(info, dict) and info.get("pid") == worker["pid"] and info.get("host") == worker.get("host")
    if worker.get("host") == me["host"]:
        if worker["pid"] == me["pid"]:
            return False
        if own and run_dir_locked(run_dir) is True:  # the kernel drops the folder's lock with its process, whatever its parent does
            return False
        return not process_alive(worker["pid"], worker.get("pid_started"))
    if own:
        return effective_status(info, run_dir) == "crashed"  # type: ignore[arg-type,unused-ignore]
    return age > SETUP_GRACE_SECONDS  # taken on another host and no run folder of its own since


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Record the trial's heartbeat in an RDB storage while the block runs (what `Study.optimize` does for its trials)."""
    storage = storage_of(study)
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if not interval:
        yield
        return
    stop = threading.Event()
    trial_id = trial_id_of(study, trial.number)

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup must not kill the trial; a missed beat is retried
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="kerasrun-sweep-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def unfinished(optuna: Any, study: Any, trials: list[Any] | None = None) -> tuple[int, int]:
    """How many trials wait and how many run (of `trials`, the study's as just read, when given)."""
    states = [t.state for t in (study.get_trials(deepcopy=False) if trials is None else trials)]
    return states.count(optuna.trial.TrialState.WAITING), states.count(optuna.trial.TrialState.RUNNING)
