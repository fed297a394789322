"""The `postgres_url` fixture's server, used for real: two processes run trials of one Optuna study in it, and none is lost."""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest

optuna = pytest.importorskip("optuna", reason="optuna (the sweep extra) is not installed")

TRIALS = 5  # per process: enough for the two to interleave, and the test stays at a few seconds
WAIT = 60  # seconds: each process takes ~2 s (importing Optuna), so only a hang gets here

# One worker process: waits until the other has joined, so that their trials do run at the same time, then optimizes.
WORKER = """
import sys, time
import optuna

url, name, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
study = optuna.load_study(study_name=name, storage=storage)
study.set_user_attr(f"joined-{worker}", True)
deadline = time.monotonic() + 30
while len(study.user_attrs) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)


def objective(trial):
    trial.set_user_attr("worker", worker)
    x = trial.suggest_float("x", -1.0, 1.0)
    time.sleep(0.05)  # a trial that lasts a little, as a training does: the other process's trials go in between
    return x * x


study.optimize(objective, n_trials=count)
"""


# Optuna marks heartbeats experimental; the sweeps use them to fail the trials of a worker that died.
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_processes_share_one_optuna_study(postgres_url: str) -> None:
    """Both processes' trials are in the study: every one complete, numbered without gaps or repeats."""
    storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=1, grace_period=2)
    name = "two-processes"
    # Created here, before the workers: the tables and the study exist once, not raced for by two processes.
    optuna.create_study(study_name=name, storage=storage, direction="minimize")

    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, name, str(worker), str(TRIALS)], stderr=subprocess.PIPE, text=True)
        for worker in range(2)
    ]
    for process in workers:
        _, errors = process.communicate(timeout=WAIT)
        assert process.returncode == 0, errors

    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert collections.Counter(trial.user_attrs["worker"] for trial in trials) == {"0": TRIALS, "1": TRIALS}
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    assert sorted(trial.number for trial in trials) == list(range(2 * TRIALS))
    storage.engine.dispose()  # the server stops at the session's end: no connection of this test stays open until then
