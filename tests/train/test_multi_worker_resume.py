"""Preempted multi-worker runs: `kerasrun launch --workers 2` stopped (SIGTERM to every worker, or one worker stopped or killed),
then `kerasrun resume RUN_DIR`, which starts the two workers again; each restores the chief's newest checkpoint
(after SIGTERM a mid-epoch one, at the step the workers agreed on).

The acceptance: the finished run's history.json and metrics.json are byte for byte the uninterrupted
two-worker run's (with Dropout and ReduceLROnPlateau). Also: each worker's log in the run folder
(workers/N.log), the cluster in run.json, no scratch folder left behind (even after kill -9), a
cluster of another size refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TESTS, TINY, finish, merge, only_run, wait_for
from test_resume import PY, alive, children_of

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

MULTI_WORKER: dict[str, Any] = {
    "name": "mw",
    "model": {
        "layers": [
            {"Dense": {"units": 16, "activation": "relu"}},
            {"Dropout": {"rate": 0.3}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 4, "callbacks": [{"ReduceLROnPlateau": {"monitor": "val_loss", "patience": 1, "factor": 0.5}}]},
}
PAUSE_EPOCH = 2  # the interrupted launch is stopped at the start of epoch 3, after 2 complete epochs (checkpoints 1 and 2)
# A worker blocked in an all-reduce whose peer stopped ends after this many seconds (its watchdog), not 15.
ENV = {"KERASRUN_STOP_GRACE_SECONDS": "3"}


def write_config(folder: Path, marker: Path) -> Path:
    """The two-worker config, pausing at PAUSE_EPOCH until `marker` exists (helpers_custom.PauseAtEpoch)."""
    config = merge(TINY, MULTI_WORKER)
    config["train"]["callbacks"] = [
        *MULTI_WORKER["train"]["callbacks"],
        {"helpers_custom:PauseAtEpoch": {"epoch": PAUSE_EPOCH, "marker": str(marker)}},
    ]
    path = folder / "mw.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def kerasrun(folder: Path, *args: str, grace: str = ENV["KERASRUN_STOP_GRACE_SECONDS"]) -> subprocess.Popen:
    """`python -m kerasrun ARGS` in a real process, its temporary folders (the workers' scratch) in folder/tmp."""
    (folder / "tmp").mkdir(exist_ok=True)
    env = {
        **os.environ,
        **ENV,
        "KERASRUN_STOP_GRACE_SECONDS": grace,
        "TMPDIR": str(folder / "tmp"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([PY, "-m", "kerasrun", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def launch(folder: Path, config: Path, grace: str = ENV["KERASRUN_STOP_GRACE_SECONDS"]) -> subprocess.Popen:
    """`kerasrun launch --workers 2` of `config` into folder/runs (`grace`: seconds from a signal to the watchdog's exit)."""
    command = ["launch", "--workers", "2", str(config), "--runs-dir", str(folder / "runs"), "--progress", "plain"]
    return kerasrun(folder, *command, grace=grace)


def resume(folder: Path, run: Path) -> tuple[int, str, str]:
    """`kerasrun resume RUN_DIR` (it starts the workers itself), to its end."""
    return finish(kerasrun(folder, "resume", str(run), "--progress", "plain"), timeout=240)


def outputs(run: Path) -> dict[str, bytes]:
    """What must be identical between the uninterrupted and the resumed run."""
    return {"history": (run / "history.json").read_bytes(), "metrics": (run / "metrics.json").read_bytes()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted two-worker run (its pause marker exists beforehand, so it never pauses)."""
    folder = tmp_path_factory.mktemp("mw-reference")
    marker = folder / "marker"
    marker.touch()
    code, out, err = finish(launch(folder, write_config(folder, marker)), timeout=240)
    assert code == 0, err
    run = only_run(folder / "runs")
    return {"run": run, "outputs": outputs(run), "stdout": out, "tmp": folder / "tmp"}


def interrupted_launch(tmp_path: Path, signum: int, workers: list[int] | None) -> tuple[Path, str]:
    """Launch, wait for the pause after epoch PAUSE_EPOCH, send `signum` to the workers numbered in `workers` (all: None).

    Returns the chief's run folder and the launcher's stderr, once the launcher has ended.
    """
    marker = tmp_path / "marker"
    # Every worker signalled: none waits on a dead peer, and agreeing on a step (the handler polls every second)
    # then checkpointing may take longer than 3 s on a busy machine.
    launcher = launch(tmp_path, write_config(tmp_path, marker), grace="30" if workers is None else ENV["KERASRUN_STOP_GRACE_SECONDS"])
    wait_for(marker, launcher, timeout=240)
    pids = sorted(children_of(launcher.pid))  # started in worker order
    assert len(pids) == 2
    for index in range(2) if workers is None else workers:
        os.kill(pids[index], signum)
    code, _out, err = finish(launcher, timeout=240)
    assert code == 1, err  # a worker ended before the others: the launch fails, naming it
    deadline = time.monotonic() + 60
    while [pid for pid in pids if alive(pid)]:
        assert time.monotonic() < deadline, "a worker kept running"
        time.sleep(0.2)
    return only_run(tmp_path / "runs"), err


@pytest.mark.slow
def test_uninterrupted_launch_records_its_cluster_and_logs(reference) -> None:
    run = reference["run"]
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and info["placement"]["replicas"] == 2
    assert info["cluster"] == {
        "workers": 2,
        "task_type": "worker",
        "task_index": 0,
        "resolver": "TF_CONFIG",
        "data_sharding": "data",
        "launcher": "kerasrun launch",
    }
    assert sorted(p.name for p in (run / "workers").iterdir()) == ["0.log", "1.log"]
    other = (run / "workers" / "1.log").read_text()
    assert other.startswith("--- ") and "(worker 1 of 2)" in other and "run folder: " in other and "done: " in other
    assert "epoch 4/4" in reference["stdout"]  # the chief's progress still goes to the terminal
    assert not list(reference["tmp"].glob("kerasrun-worker-*"))  # the other worker's scratch folder is removed


@pytest.mark.slow
def test_sigterm_to_every_worker_then_resume_is_byte_identical(reference, tmp_path) -> None:
    run, err = interrupted_launch(tmp_path, signal.SIGTERM, None)  # as Slurm and Kubernetes stop a job
    info = read_json(run / "run.json")
    assert info["status"] == "interrupted" and info["checkpoint_epoch"] == PAUSE_EPOCH and "forced" not in info
    # Saved on preemption at the step the workers agreed on (when depends on the handler's 1 s polling).
    step = info["checkpoint_step"]
    assert step > 0 and (run / "checkpoints" / f"epoch-{PAUSE_EPOCH:04d}-step-{step:06d}.npz").is_file()
    assert f"`kerasrun resume {run}` continues the run from its last checkpoint" in err
    code, out, err = resume(tmp_path, run)
    assert code == 0, err
    assert f"resuming {run} at step {step} of epoch {PAUSE_EPOCH + 1} of 4" in out and "epoch 4/4" in out
    assert outputs(run) == reference["outputs"]
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and [r["from_epoch"] for r in info["resumes"]] == [PAUSE_EPOCH]
    assert info["resumes"][0]["cluster"] == info["cluster"]  # resumed by two local workers again
    log = (run / "workers" / "1.log").read_text()
    assert log.count("--- ") == 2 and f"kerasrun resume {run}" in log  # the resume's log goes on after the launch's
    assert not list((tmp_path / "tmp").glob("kerasrun-worker-*"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "index", "said"),
    [
        pytest.param(signal.SIGTERM, 0, "was stopped by SIGTERM (exit 143)", marks=pytest.mark.cluster),
        (signal.SIGKILL, 1, "was killed by SIGKILL"),
    ],
)
def test_one_worker_stopped_or_killed_then_resume_is_byte_identical(reference, tmp_path, how, index, said) -> None:
    run, err = interrupted_launch(tmp_path, how, [index])
    assert f"worker {index} {said}; stopped the others" in err
    if how == signal.SIGKILL:  # the killed worker could not remove its scratch folder
        assert len(list((tmp_path / "tmp").glob("kerasrun-worker-*"))) == 1
    code, _out, err = resume(tmp_path, run)
    assert code == 0, err
    assert outputs(run) == reference["outputs"]
    assert not list((tmp_path / "tmp").glob("kerasrun-worker-*"))  # the new worker removed the dead one's on start


def test_a_cluster_of_another_size_is_refused(runner, write_config, tmp_path, monkeypatch) -> None:
    from kerasrun.rundir.opened import sign_run

    # A run folder as a two-worker cluster (not `kerasrun launch`) leaves it, made by one quick process.
    result = runner.invoke(
        app, ["train", str(write_config()), "--runs-dir", str(tmp_path), "--progress", "none", "--set", "train.epochs=1"]
    )
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    text = (run / "config.yaml").read_text().replace("strategy: none", "strategy: multi_worker")
    assert "strategy: multi_worker" in text
    (run / "config.yaml").write_text(text)
    info = read_json(run / "run.json")
    info.update(status="interrupted", placement=dict(info["placement"], replicas=2))
    info["cluster"] = {"workers": 2, "task_type": "worker", "task_index": 0, "resolver": "TF_CONFIG"}
    sign_run(run, info, text.encode())
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))  # refused before a strategy would wait for these three workers
    result = runner.invoke(app, ["resume", str(run), "--progress", "none"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "the run trained on 2 workers (2 replicas), this cluster has 3 workers" in said and "resume it on 2 workers" in said
    assert read_json(run / "run.json")["status"] == "interrupted"  # nothing was taken over
    # The hints name every worker: a cluster's run is resumed by all of them.
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2 and f"`kerasrun resume {run}` on each of its 2 workers" in " ".join(result.output.split())


def test_who_resumes_a_multi_worker_run(tmp_path, monkeypatch) -> None:
    from kerasrun.rundir.liveness import resume_command
    from kerasrun.train.resume import relaunch_count

    (tmp_path / "config.yaml").write_text("name: x\n")
    cluster = {"workers": 3, "task_type": "worker", "task_index": 0, "resolver": "TF_CONFIG"}
    runs = {"launched": {"cluster": {**cluster, "launcher": "kerasrun launch"}}, "cluster": {"cluster": cluster}, "one": {}}
    monkeypatch.delenv("TF_CONFIG", raising=False)
    counts, hints = {}, {}
    for name, info in runs.items():
        (tmp_path / "run.json").write_text(json.dumps(info))
        counts[name] = relaunch_count(tmp_path)
        hints[name] = resume_command(tmp_path, info)
    assert counts == {"launched": 3, "cluster": None, "one": None}  # only `kerasrun launch`'s workers are started again by resume
    assert hints["launched"] == hints["one"] == f"`kerasrun resume {tmp_path}`"
    assert hints["cluster"] == f"`kerasrun resume {tmp_path}` on each of its 3 workers (each with its own TF_CONFIG settings)"
    (tmp_path / "run.json").write_text(json.dumps(runs["launched"]))
    monkeypatch.setenv("TF_CONFIG", "{}")  # a worker the launcher started, or one of a cluster: it resumes as itself
    assert relaunch_count(tmp_path) is None
