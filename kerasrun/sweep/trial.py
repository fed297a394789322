"""One trial: exactly `kerasrun train CONFIG --set …` (the same library path), inside an already running process.

A trial whose earlier attempt was interrupted or whose process died continues in its own folder as
`kerasrun resume` does (from its newest checkpoint, to the uninterrupted trial's bytes).

Between trials the process is brought back to what a fresh process looks like to a run: Keras's
global state is cleared (layer-name counters, the global seed generator, the dtype policy), and
prepare_experiment seeds Python's, NumPy's and TensorFlow's generators as `train` does.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kerasrun._tf import keras, tf
from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError, DivergedError, KerasrunError
from kerasrun.rundir import checkpoints
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import HISTORY_FILE, METRICS_FILE, RUN_FILE
from kerasrun.train.resume import ResumePlan, load_for_resume
from kerasrun.train.signals import Interrupted, as_interrupted


class Pruned(Interrupted):
    """Raised by a pruning callback at an epoch's end: the run stops as an interrupted run does, with status `pruned`."""

    status = "pruned"

    def __init__(self, epoch: int, metric: str, value: float) -> None:
        super().__init__()
        self.epoch, self.metric, self.value = epoch, metric, value

    @property
    def name(self) -> str:
        """How the stop is reported."""
        return f"pruned at epoch {self.epoch}"

    def outcome(self) -> dict[str, object]:
        """What run.json records: the epoch and the metric value the pruner judged."""
        return {"pruned": {"epoch": self.epoch, "metric": self.metric, "value": self.value}}


@dataclass
class TrialOutcome:
    """How a trial ended, in plain data (it travels from a worker process as JSON)."""

    status: str  # completed | failed | diverged | interrupted | pruned
    run_dir: str | None = None
    history: dict[str, list[Any]] = field(default_factory=dict)
    test_metrics: dict[str, float] | None = None
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """As a JSON-able dict."""
        return asdict(self)


class DropRetracingWarnings(logging.Filter):
    """TensorFlow warns when many tf.functions are traced in one process; a sweep builds a new model per trial on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


RETRACING_FILTER = DropRetracingWarnings()


def reset_process_state() -> None:
    """Forget the previous trial's Keras state, as a new process would not have it (seeds are set by prepare_experiment)."""
    keras.utils.clear_session(free_memory=True)
    tf.get_logger().addFilter(RETRACING_FILTER)  # once: the same filter object is not added twice


def run_trial(
    config_path: Path,
    overrides: list[str],
    run_dir: Path,
    runs_dir: Path | None = None,
    progress: str = "none",
    command: list[str] | None = None,
    callbacks: list[Any] | None = None,
) -> tuple[TrialOutcome, Interrupted | None]:
    """Train one trial into `run_dir` (created here, after the experiment is prepared, as `train` does).

    A failure is returned as the outcome; a signal is returned too, for the caller to stop the sweep
    after recording it (a pruned trial is only an outcome).
    """
    from kerasrun.train.experiment import prepare_experiment
    from kerasrun.train.run import run_experiment

    reset_process_state()
    start = time.perf_counter()
    created = False
    try:
        earlier = earlier_attempt(run_dir)
        if isinstance(earlier, TrialOutcome):  # it completed, and its process died before the study heard of it
            return earlier, None
        if earlier is None:
            config = load_config(config_path, overrides)
            experiment = prepare_experiment(config, runs_dir)
            run_dir.mkdir(parents=True)
        else:
            experiment = prepare_experiment(earlier.config, initial_weights=False)
        created = True
        result = run_experiment(experiment, run_dir, progress, command=command, resume=earlier, extra_callbacks=callbacks)
        outcome = TrialOutcome("completed", str(run_dir), result.history, result.metrics)
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        if created and not (run_dir / RUN_FILE).exists():  # stopped while the folder was being set up: nothing to keep
            shutil.rmtree(run_dir, ignore_errors=True)
            created = False
        outcome = TrialOutcome(interrupted.status, str(run_dir) if created else None, read_history(run_dir), error=interrupted.name)
        outcome.seconds = time.perf_counter() - start
        return outcome, None if isinstance(interrupted, Pruned) else interrupted
    except DivergedError as exc:
        outcome = TrialOutcome("diverged", str(run_dir), read_history(run_dir), error=str(exc))
    except ConfigError as exc:
        outcome = TrialOutcome("failed", str(run_dir) if created else None, error=exc.describe())
    except KerasrunError as exc:
        outcome = TrialOutcome("failed", str(run_dir) if created else None, read_history(run_dir), error=str(exc))
    except Exception as exc:  # a trial's bug (a user's callback, a factory) must not end the sweep
        outcome = TrialOutcome("failed", str(run_dir) if created else None, read_history(run_dir), error=f"{type(exc).__name__}: {exc}")
    outcome.seconds = time.perf_counter() - start
    return outcome, None


def earlier_attempt(run_dir: Path) -> ResumePlan | TrialOutcome | None:
    """What an earlier attempt left in the trial's folder: a run to resume, a completed outcome, or None (train anew).

    A folder with nothing to resume from (stopped before its first checkpoint) is removed: the trial
    starts again from scratch, as the same seed makes it the same run. A folder that can't be resumed
    for another reason (locked by a live process, not signed by kerasrun) fails the attempt untouched.
    """
    if not run_dir.exists() and not run_dir.is_symlink():
        return None
    try:
        info = read_json(run_dir / RUN_FILE)
    except RunFileError:
        info = None
    if isinstance(info, dict) and info.get("status") == "completed":
        try:
            metrics = read_json(run_dir / METRICS_FILE)
        except RunFileError:
            metrics = None
        return TrialOutcome("completed", str(run_dir), read_history(run_dir), metrics if isinstance(metrics, dict) else None)
    if isinstance(info, dict) and checkpoints.latest(run_dir) is not None:
        # Anything that keeps it from resuming (another process trains in it, a folder kerasrun did not sign)
        # fails this attempt, and the folder is left as it is.
        return load_for_resume(run_dir, [])
    shutil.rmtree(run_dir)  # no checkpoint: nothing of it to keep (it stopped before its first epoch ended)
    return None


def read_history(run_dir: Path) -> dict[str, list[Any]]:
    """The epochs a stopped trial recorded ({} without a history.json)."""
    try:
        history = read_json(run_dir / HISTORY_FILE)
    except RunFileError:
        return {}
    return history if isinstance(history, dict) else {}
