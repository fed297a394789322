"""`kerasrun resume RUN_DIR`: continue a run in its own folder from its newest checkpoint.

After SIGINT/SIGTERM/SIGHUP, `kill -9` or a crash the run goes on from the last completed epoch and
ends with the bytes an uninterrupted run would have written; a completed run goes on for more epochs
when `train.epochs` is raised. Only keys that don't change the experiment may be overridden.
"""

from __future__ import annotations

from pathlib import Path

from kerasrun.config import Config, load_config
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir import effective_status
from kerasrun.runs import open_run

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


def load_for_resume(run_dir: Path, overrides: list[str], checkpoint_epoch: int | None, trust: bool = False) -> Config:
    """The run's config (with allowed overrides) after checking the run can be resumed from `checkpoint_epoch`."""
    run_dir = Path(run_dir)
    check_overrides(overrides)
    info = open_run(run_dir, trust)
    status = effective_status(info)
    where = str(run_dir)
    if status == "running":
        raise ConfigError(Problem(key="", file=where, message=f"the run is still training (pid {info.get('pid')} on {info.get('host')})"))
    if status == "diverged":
        raise ConfigError(
            Problem(
                key="",
                file=where,
                message="the run diverged; resuming would diverge again at the same step (the numbers are the same)",
                hint="start a new run from its weights with another learning rate (model.init_from)",
            )
        )
    config = load_config(run_dir / "config.yaml", overrides)
    if config.runtime.strategy == "multi_worker":
        raise ConfigError(Problem(key="runtime.strategy", file=where, message="resuming a multi-worker run is not supported yet"))
    if checkpoint_epoch is None:
        why = "checkpoints were off (output.checkpoint)" if not config.output.checkpoint else "it stopped before its first epoch ended"
        raise ConfigError(Problem(key="", file=where, message=f"the run has no checkpoint to resume from: {why}", hint="train it again"))
    more_epochs = any(item.split("=", 1)[0] == "train.epochs" for item in overrides)
    if status == "completed" and (not more_epochs or config.train.epochs <= checkpoint_epoch):
        raise ConfigError(
            Problem(
                key="train.epochs",
                file=where,
                message=f"the run completed its {checkpoint_epoch} epochs",
                hint=f"to train on, raise the epoch count: --set train.epochs={checkpoint_epoch + 10}",
            )
        )
    if config.train.epochs < checkpoint_epoch:
        raise ConfigError(
            Problem(
                key="train.epochs", file="--set", message=f"the run already has {checkpoint_epoch} epochs; train.epochs can't go below that"
            )
        )
    return config
