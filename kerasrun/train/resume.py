"""`kerasrun resume RUN_DIR`: continue a run in its own folder from its newest checkpoint.

After SIGINT/SIGTERM/SIGHUP, `kill -9` or a crash the run goes on from the last completed epoch and
ends with the bytes an uninterrupted run would have written; a completed run goes on for more epochs
when `train.epochs` is raised. Only keys that don't change the experiment may be overridden.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasrun.config.schema import Config
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir import checkpoints
from kerasrun.rundir.checkpoints import TrainingState
from kerasrun.rundir.liveness import effective_status, run_dir_locked
from kerasrun.rundir.opened import open_run, read_run_info
from kerasrun.train.launch import LAUNCHER
from kerasrun.train.workers import check_same_cluster, describe_cluster, tf_config_workers

if TYPE_CHECKING:  # `kerasrun resume` reads the plan before TensorFlow is imported
    from kerasrun.train.devices import Placement

# What may differ on resume without changing the numbers of the epochs still to come.
RESUMABLE_KEYS = ("train.epochs", "runtime.device", "output.checkpoint")


def check_overrides(overrides: list[str]) -> None:
    """Refuse `--set` keys that would make the resumed run a different experiment."""
    problems = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_KEYS):
            problems.append(
                Problem(
                    key=key,
                    file="--set",
                    message="cannot change on resume: the epochs still to come would not continue the same run",
                    hint=f"resume may set {', '.join(RESUMABLE_KEYS)}; for anything else start a new run from this one's weights (model.init_from)",
                )
            )
    if problems:
        raise ConfigError(problems)


@dataclass
class ResumePlan:
    """What `kerasrun resume` continues: the run's config, its newest checkpoint, and the epoch training restarts at."""

    config: Config
    state: TrainingState
    start_epoch: int  # the checkpoint's epoch; train.epochs when the run had already stopped early (nothing left to train)
    retrained: int = 0  # epochs the run completed after its newest checkpoint (e.g. with checkpoints off): trained again
    info: dict[str, Any] = field(default_factory=dict)  # run.json as it was read

    @property
    def start_step(self) -> int:
        """Steps of the start epoch already done: a mid-epoch checkpoint's (0 when an early stop left nothing to train)."""
        return self.state.step if self.start_epoch == self.state.epoch < self.config.train.epochs else 0


def load_for_resume(run_dir: Path, overrides: list[str], trust: bool = False) -> ResumePlan:
    """Check that the run can be resumed (signature, status, overrides, checkpoint) and plan it."""
    run_dir = Path(run_dir)
    check_overrides(overrides)
    run = open_run(run_dir, trust)  # before reading anything else in the folder
    where = str(run_dir)
    config = run.config(overrides)
    multi_worker = config.runtime.strategy == "multi_worker"
    if not multi_worker:  # a multi-worker run's chief checks once it knows it is the chief (resume_folder): the others read alongside it
        check_free(run_dir, run.info, run.status)
    else:  # before the strategy waits for a cluster of the wrong size
        check_same_cluster(run_dir, run.info, tf_config_workers())
    if run.status == "diverged":
        raise ConfigError(
            Problem(
                key="",
                file=where,
                message="the run diverged; resuming would diverge again at the same step (the numbers are the same)",
                hint="start a new run from its weights with another learning rate (model.init_from)",
            )
        )
    state = read_newest_checkpoint(run_dir, run.config())  # why there is none: the run's own settings, not the overrides
    more_epochs = any(item.split("=", 1)[0] == "train.epochs" for item in overrides)
    if run.status == "completed" and state.meta.get("stopped"):
        raise ConfigError(
            Problem(
                key="train.epochs",
                file=where,
                message=f"a callback (e.g. EarlyStopping) stopped the run after epoch {state.epoch}: planned longer, it would have stopped there too",
                hint="to train on anyway, start a new run from its weights (model.init_from)",
            )
        )
    if run.status == "completed" and (not more_epochs or config.train.epochs <= state.epoch):
        raise ConfigError(
            Problem(
                key="train.epochs",
                file=where,
                message=f"the run completed its {state.epoch} epochs",
                hint=f"to train on, raise the epoch count: --set train.epochs={state.epoch + 10}",
            )
        )
    if config.train.epochs < state.epoch:
        raise ConfigError(
            Problem(key="train.epochs", file="--set", message=f"the run already has {state.epoch} epochs; train.epochs can't go below that")
        )
    # A run that stopped early (EarlyStopping) and was cut off while saving or evaluating has no
    # epochs left: train none (unless the user asked a completed run for more).
    stopped = bool(state.meta.get("stopped")) and run.status != "completed"
    done = run.info.get("epochs_completed")
    retrained = done - state.epoch if isinstance(done, int) and done > state.epoch else 0
    return ResumePlan(config, state, config.train.epochs if stopped else state.epoch, retrained, run.info)


def check_free(run_dir: Path, info: dict[str, Any], status: str) -> None:
    """Refuse a run another process trains: its folder locked, or `running` with a live process or heartbeat."""
    where = str(run_dir)
    if run_dir_locked(run_dir):
        raise ConfigError(
            Problem(key="", file=where, message=f"another kerasrun process (pid {info.get('pid')}) is training in this run folder")
        )
    if status == "running":
        raise ConfigError(Problem(key="", file=where, message=f"the run is still training (pid {info.get('pid')} on {info.get('host')})"))


def resume_folder(run_dir: Path, plan: ResumePlan, placement: Placement) -> Path | None:
    """Where this process resumes: the run's own folder (one process, or a multi-worker run's chief), or None for another worker.

    Every worker of a multi-worker run restores the chief's newest checkpoint from the run folder
    (shared storage on a cluster); the others then train in a scratch folder of their own, as in
    `kerasrun train`. The cluster must be as large as the one the run trained on.
    """
    if plan.config.runtime.strategy != "multi_worker":
        return run_dir
    check_same_cluster(run_dir, plan.info, (describe_cluster(placement) or {}).get("workers"), placement.replicas)
    if not placement.is_chief:
        return None
    info = read_run_info(run_dir)
    check_free(run_dir, info, effective_status(info, run_dir))
    return run_dir


def relaunch_count(run_dir: Path) -> int | None:
    """How many local workers `kerasrun resume` starts again: those of a run `kerasrun launch` trained, resumed outside a cluster.

    None when this process resumes the run itself: one process, or a worker of a cluster (TF_CONFIG set).
    """
    if os.environ.get("TF_CONFIG"):
        return None
    try:
        info = read_run_info(run_dir)
    except ConfigError:  # load_for_resume says what is wrong with the folder
        return None
    cluster = info.get("cluster")
    if not isinstance(cluster, dict) or cluster.get("launcher") != LAUNCHER:
        return None
    workers = cluster.get("workers")
    return workers if isinstance(workers, int) and not isinstance(workers, bool) and workers > 0 else None


def check_relaunch(run_dir: Path, overrides: list[str], trust: bool = False) -> None:
    """Before `kerasrun resume` starts the workers again: everything load_for_resume checks, and that no process trains the run."""
    load_for_resume(run_dir, overrides, trust)
    info = read_run_info(run_dir)
    check_free(run_dir, info, effective_status(info, run_dir))


def read_newest_checkpoint(run_dir: Path, config: Config) -> TrainingState:
    """The run's newest checkpoint, or a ConfigError saying why there is none or why it can't be read."""
    path = checkpoints.latest(run_dir)
    if path is None:
        why = "checkpoints were off (output.checkpoint)" if not config.output.checkpoint else "it stopped before its first epoch ended"
        raise ConfigError(
            Problem(key="", file=str(run_dir), message=f"the run has no checkpoint to resume from: {why}", hint="train it again")
        )
    try:
        return checkpoints.read(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError(Problem(key="", file=str(path), message=f"the checkpoint cannot be read: {exc}")) from None
