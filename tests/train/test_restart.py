"""Restart-safe training in real processes: `train --resume-existing` run again after SIGTERM or kill -9 (one process, and two
workers started by hand as on two nodes), and Slurm's requeue.

The same command, run as a restarting platform runs it, ends with the bytes of an uninterrupted run;
run once more on the completed folder it changes nothing. In a (fake) Slurm job, SIGUSR1 checkpoints,
calls `scontrol requeue JOB` (a stub on PATH records it), and the requeued job's plain `kerasrun train`
resumes the job's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TESTS, TINY, finish, merge, only_run, wait_for, write_tiny
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError
from kerasrun.rundir.io import read_json
from kerasrun.train.restart import differing_keys, find_job_run, named_run_dir, plan_restart, resumable

PAUSE_EPOCH = 2
CONFIG: dict[str, Any] = {
    "name": "restartable",
    "model": {
        "layers": [
            {"Dense": {"units": 16, "activation": "relu"}},
            {"Dropout": {"rate": 0.3}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 4},
}


def write_config(folder: Path, marker: Path, changes: dict[str, Any] | None = None) -> Path:
    """The config, pausing at PAUSE_EPOCH until `marker` exists (helpers_custom.PauseAtEpoch)."""
    config = merge(merge(TINY, CONFIG), changes or {})
    config["train"]["callbacks"] = [{"helpers_custom:PauseAtEpoch": {"epoch": PAUSE_EPOCH, "marker": str(marker)}}]
    path = folder / "restartable.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def kerasrun(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m kerasrun ARGS` in a real process (tests/ importable for helpers_custom)."""
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "kerasrun", *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outputs(run: Path) -> dict[str, bytes]:
    """What must be identical between an uninterrupted and a restarted run."""
    return {name: (run / name).read_bytes() for name in ("history.json", "metrics.json")}


def folder_bytes(run: Path) -> dict[str, str]:
    """Every file of a folder and the digest of its bytes."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*")) if p.is_file()}


def restart_command(config: Path, runs: Path) -> list[str]:
    """The one command a restarting platform runs again and again."""
    return ["train", str(config), "--name", "job", "--resume-existing", "--runs-dir", str(runs), "--progress", "plain"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run, by the restart-safe command (its pause marker exists beforehand, so it never pauses)."""
    folder = tmp_path_factory.mktemp("reference")
    marker = folder / "marker"
    marker.touch()
    code, _out, err = finish(kerasrun(*restart_command(write_config(folder, marker), folder / "runs")))
    assert code == 0, err
    return folder / "runs" / "job"


@pytest.fixture(scope="module")
def reference(reference_run: Path) -> dict[str, bytes]:
    """The uninterrupted run's history and metrics."""
    return outputs(reference_run)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_same_command_resumes_then_reports_a_completed_run(reference, tmp_path, how) -> None:
    marker = tmp_path / "marker"
    config, runs = write_config(tmp_path, marker), tmp_path / "runs"
    first = kerasrun(*restart_command(config, runs))
    wait_for(marker, first)
    run = runs / "job"  # the name as given: no timestamp, so the next start finds it
    if how == "SIGTERM":  # while it trains, a second copy of the command refuses to touch the folder (in-process: quicker)
        refused = CliRunner().invoke(app, restart_command(config, runs))
        assert refused.exit_code == 2 and "still training" in refused.output, refused.output
    first.send_signal(getattr(signal, how))
    code, _out, err = finish(first)
    assert code == (143 if how == "SIGTERM" else -signal.SIGKILL), err
    # SIGTERM is saved on preemption after the current call, which here holds the whole epoch (steps_per_execution).
    saved = PAUSE_EPOCH + 1 if how == "SIGTERM" else PAUSE_EPOCH
    assert (run / "checkpoints" / f"epoch-{saved:04d}.npz").is_file()

    code, out, err = finish(kerasrun(*restart_command(config, runs)))
    assert code == 0, err
    assert f"resuming {run} after epoch {saved}" in out
    info = read_json(run / "run.json")
    assert info["status"] == "completed"
    assert [r["previous_status"] for r in info["resumes"]] == ["interrupted" if how == "SIGTERM" else "crashed"]
    assert outputs(run) == reference  # byte for byte

    before = folder_bytes(run)
    again = CliRunner().invoke(app, restart_command(config, runs))
    assert again.exit_code == 0, again.output
    assert "is completed: nothing to do" in again.output
    assert folder_bytes(run) == before and sorted(p.name for p in runs.iterdir()) == ["job"]


@pytest.mark.slow
def test_a_folder_of_another_config_is_refused_with_the_keys(reference_run, tmp_path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(reference_run, runs / "job")
    before = folder_bytes(runs / "job")
    other = write_config(tmp_path, reference_run.parents[1] / "marker", {"train": {"batch_size": 8}, "seed": 8})
    result = CliRunner().invoke(app, restart_command(other, runs))  # refused before TensorFlow is needed
    assert result.exit_code == 2, result.output
    assert "another config" in result.output and "seed" in result.output and "train.batch_size" in result.output
    assert folder_bytes(runs / "job") == before
    cpu = write_config(tmp_path, reference_run.parents[1] / "marker", {"runtime": {"device": "cpu"}})  # a resumable key may differ
    assert plan_restart(load_config(cpu, values={"name": "job"}), runs / "job").action == "completed"


def test_differing_keys_and_run_folder_names(tmp_path) -> None:
    old = {"seed": 1, "train": {"epochs": 3, "batch_size": 16}, "runtime": {"device": "auto"}}
    new = {"seed": 1, "train": {"epochs": 5, "batch_size": 8}, "runtime": {"device": ["gpu:0", "gpu:1"]}}
    assert differing_keys(old, new) == ["train.epochs", "train.batch_size", "runtime.device"]
    assert [key for key in differing_keys(old, new) if not resumable(key)] == ["train.batch_size"]
    assert named_run_dir(tmp_path, "job-3") == tmp_path / "job-3"
    for bad in ("a/b", "..", ""):
        with pytest.raises(ConfigError):
            named_run_dir(tmp_path, bad)


@pytest.mark.slow
def test_an_attempt_stopped_before_its_first_checkpoint_is_started_over(tmp_path) -> None:
    callbacks = [{"helpers_custom:InterruptOnceAtEpoch": {"epoch": 0, "marker": str(tmp_path / "interrupted")}}]
    config = write_tiny(tmp_path, {"train": {"epochs": 2, "callbacks": callbacks}})
    runs, runner = tmp_path / "runs", CliRunner()
    first = runner.invoke(app, restart_command(config, runs))
    assert first.exit_code == 130, first.output
    assert read_json(runs / "job" / "run.json")["status"] == "interrupted" and not list(runs.glob("job/checkpoints/*"))
    second = runner.invoke(app, restart_command(config, runs))
    assert second.exit_code == 0, second.output
    assert "was interrupted before its first checkpoint; starting it over" in second.output
    info = read_json(runs / "job" / "run.json")
    assert info["status"] == "completed" and info["epochs_completed"] == 2 and "resumes" not in info


def stub_scontrol(folder: Path) -> tuple[Path, Path]:
    """A fake `scontrol` on PATH that appends its arguments to a log (as TensorFlow's Slurm tests stub it); (bin dir, log)."""
    bin_dir, log = folder / "bin", folder / "scontrol.log"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(0o755)
    return bin_dir, log


@pytest.mark.slow
def test_slurm_usr1_checkpoints_requeues_and_the_requeued_job_resumes(reference, tmp_path) -> None:
    marker = tmp_path / "marker"
    config, runs = write_config(tmp_path, marker), tmp_path / "runs"
    bin_dir, log = stub_scontrol(tmp_path)
    env = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = ["train", str(config), "--runs-dir", str(runs), "--progress", "plain"]
    first = kerasrun(*command, env=env)
    wait_for(marker, first)
    first.send_signal(signal.SIGUSR1)  # sbatch --signal=USR1@90
    code, _out, err = finish(first)
    assert code == 128 + signal.SIGUSR1, err
    run = only_run(runs)
    info = read_json(run / "run.json")
    assert info["status"] == "interrupted" and info["signal"] == "SIGUSR1" and info["slurm"]["job_id"] == "4242"
    assert (run / "checkpoints" / f"epoch-{PAUSE_EPOCH + 1:04d}.npz").is_file()  # saved after the call holding the epoch
    assert log.read_text().split() == ["requeue", "4242"] and "requeued Slurm job 4242" in err
    assert find_job_run(runs, load_config(config), "4242") == run and find_job_run(runs, load_config(config), "4243") is None
    other = load_config(config, ["seed=8"])  # the same job may train the config again with other values: not this folder
    assert find_job_run(runs, other, "4242") is None

    code, out, err = finish(kerasrun(*command, env={**env, "SLURM_RESTART_COUNT": "1"}))  # the requeued job: same command
    assert code == 0, err
    assert f"resuming {run} after epoch {PAUSE_EPOCH + 1}" in out and only_run(runs) == run
    assert read_json(run / "run.json")["status"] == "completed"
    assert outputs(run) == reference
    assert log.read_text().split() == ["requeue", "4242"]  # a run that completes asks for nothing


@pytest.mark.slow
def test_slurm_usr1_to_a_process_stuck_in_tensorflow_still_requeues(tmp_path) -> None:
    marker = tmp_path / "stuck"
    config = write_tiny(
        tmp_path, {"train": {"callbacks": [{"helpers_custom:StuckAtEpoch": {"epoch": 1, "marker": str(marker), "signal_name": "SIGUSR1"}}]}}
    )
    bin_dir, log = stub_scontrol(tmp_path)
    env = {
        "SLURM_JOB_ID": "99",
        "SLURM_PROCID": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KERASRUN_STOP_GRACE_SECONDS": "2",
    }
    process = kerasrun("train", str(config), "--runs-dir", str(tmp_path / "runs"), env=env)
    wait_for(marker, process)
    process.send_signal(signal.SIGUSR1)
    code, _out, err = finish(process)
    assert code == 128 + signal.SIGUSR1, err  # ended by the watchdog, after the run was marked
    info = read_json(only_run(tmp_path / "runs") / "run.json")
    assert (info["status"], info["signal"], info["forced"]) == ("interrupted", "SIGUSR1", True)
    assert log.read_text().split() == ["requeue", "99"]


def two_workers(folder: Path, config: Path, runs: Path) -> list[subprocess.Popen]:
    """The restart-safe command on two workers started by hand, as on two nodes (each its own TF_CONFIG, ports on 127.0.0.1)."""
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    (folder / "tmp").mkdir(exist_ok=True)
    return [
        kerasrun(
            *restart_command(config, runs),
            "--set",
            "runtime.strategy=multi_worker",
            env={
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                "TMPDIR": str(folder / "tmp"),
                "KERASRUN_STOP_GRACE_SECONDS": "3",  # a worker blocked in an all-reduce whose peer stopped
            },
        )
        for index in range(2)
    ]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.cluster
def test_two_workers_restarted_with_the_same_command_resume_the_chiefs_folder(tmp_path) -> None:
    reference_folder = tmp_path / "reference"
    reference_folder.mkdir()
    (reference_folder / "marker").touch()
    config = write_config(reference_folder, reference_folder / "marker")
    for process in two_workers(reference_folder, config, reference_folder / "runs"):
        code, _out, err = finish(process)
        assert code == 0, err[-3000:]
    uninterrupted = outputs(reference_folder / "runs" / "job")

    marker, runs = tmp_path / "marker", tmp_path / "runs"
    config = write_config(tmp_path, marker)
    workers = two_workers(tmp_path, config, runs)
    wait_for(marker, workers[0])
    time.sleep(1)  # the chief pauses; the other worker waits for it in the epoch's first all-reduce
    for process in workers:
        process.send_signal(signal.SIGTERM)  # as Kubernetes stops every pod of a job
    for process in workers:
        finish(process)
    assert read_json(runs / "job" / "run.json")["status"] == "interrupted"

    for process in two_workers(tmp_path, config, runs):
        code, _out, err = finish(process)
        assert code == 0, err[-3000:]
    info = read_json(runs / "job" / "run.json")
    # Saved on preemption where the workers agreed: at the end of the paused epoch's call or in the next epoch.
    assert info["status"] == "completed" and [r["from_epoch"] >= PAUSE_EPOCH for r in info["resumes"]] == [True]
    assert outputs(runs / "job") == uninterrupted  # byte for byte
    assert sorted(p.name for p in runs.iterdir()) == ["job"] and not list((tmp_path / "tmp").glob("kerasrun-worker-*"))
