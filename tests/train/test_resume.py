"""Preemption in real processes: SIGTERM, SIGHUP, SIGINT and kill -9 after an epoch, then `kerasrun resume`.

The acceptance: a run interrupted after epoch k and resumed ends with the history.json, metrics.json
and final weights of the same run uninterrupted, byte for byte — with Dropout, shuffling,
EarlyStopping and ReduceLROnPlateau, for both loops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import TESTS, TINY, finish, merge, only_run, wait_for

from kerasrun.rundir.io import read_json
from kerasrun.rundir.liveness import effective_status

PY = sys.executable
PAUSE_EPOCH = 3  # the interrupted run stops at the start of epoch 4, after 3 complete epochs

RESUMABLE: dict[str, Any] = {
    "name": "resumable",
    "model": {
        "layers": [
            {"Dense": {"units": 16, "activation": "relu"}},
            {"Dropout": {"rate": 0.3}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "compile": {"steps_per_execution": 4},
    "train": {
        "epochs": 7,
        "callbacks": [
            {"EarlyStopping": {"monitor": "val_loss", "patience": 3, "restore_best_weights": True}},
            {"ReduceLROnPlateau": {"monitor": "val_loss", "patience": 1, "factor": 0.5}},
            {"CSVLogger": {"filename": "log.csv"}},
        ],
    },
}


def write_resumable(folder: Path, loop: str, marker: Path) -> Path:
    """The resumable config, pausing at PAUSE_EPOCH until `marker` exists (see helpers_custom.PauseAtEpoch)."""
    config = merge(TINY, RESUMABLE)
    config["train"] = dict(config["train"], loop=loop)
    config["train"]["callbacks"] = [
        *RESUMABLE["train"]["callbacks"],
        {"helpers_custom:PauseAtEpoch": {"epoch": PAUSE_EPOCH, "marker": str(marker)}},
    ]
    path = folder / f"{loop}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def kerasrun(*args: str, **kwargs: Any) -> subprocess.Popen:
    """`python -m kerasrun ARGS` in a real process (tests/ importable for helpers_custom)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([PY, "-m", "kerasrun", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def final_weights(run: Path) -> list[bytes]:
    """The saved model's weights, as raw bytes."""
    from kerasrun._tf import keras

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    return [np.asarray(w).tobytes() for w in model.get_weights()]


def outputs(run: Path) -> dict[str, Any]:
    """What must be identical between an uninterrupted and a resumed run."""
    return {
        "history": (run / "history.json").read_bytes(),
        "metrics": (run / "metrics.json").read_bytes(),
        "csv": (run / "log.csv").read_bytes(),
        "weights": final_weights(run),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each loop's uninterrupted run (its pause marker exists beforehand, so it never pauses)."""
    out = {}
    for loop in ("fit", "custom"):
        folder = tmp_path_factory.mktemp(f"reference-{loop}")
        marker = folder / "marker"
        marker.touch()
        code, _stdout, err = finish(kerasrun("train", str(write_resumable(folder, loop, marker)), "--runs-dir", str(folder / "runs")))
        assert code == 0, err
        out[loop] = outputs(only_run(folder / "runs"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "custom"])
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_interrupted_and_resumed_run_is_byte_identical(reference, tmp_path, loop, how) -> None:
    marker = tmp_path / "marker"
    config = write_resumable(tmp_path, loop, marker)
    process = kerasrun("train", str(config), "--runs-dir", str(tmp_path / "runs"), "--progress", "plain")
    wait_for(marker, process)
    process.send_signal(getattr(signal, how))
    code, stdout, err = finish(process)
    run = only_run(tmp_path / "runs")
    info = read_json(run / "run.json")
    if how == "SIGTERM":
        assert code == 143, err
        assert "interrupted (SIGTERM)" in err and f"kerasrun resume {run}" in err
        assert info["status"] == "interrupted" and info["signal"] == "SIGTERM" and info["epochs_completed"] == PAUSE_EPOCH
    else:
        assert code == -signal.SIGKILL
        assert info["status"] == "running" and effective_status(info) == "crashed"  # the process is gone
    assert not (run / "model.keras").exists()
    if how == "SIGTERM":  # saved on preemption: after the first call of the epoch (steps_per_execution 4)
        assert info["checkpoint_epoch"] == PAUSE_EPOCH and info["checkpoint_step"] == 4
        assert (run / "checkpoints" / f"epoch-{PAUSE_EPOCH:04d}-step-000004.npz").is_file()
        resumed_at = f"at step 4 of epoch {PAUSE_EPOCH + 1}"
    else:
        assert (run / "checkpoints" / f"epoch-{PAUSE_EPOCH:04d}.npz").is_file()
        resumed_at = f"after epoch {PAUSE_EPOCH}"

    code, stdout, err = finish(kerasrun("resume", str(run), "--progress", "plain"))
    assert code == 0, err
    assert f"resuming {run} {resumed_at}" in stdout
    info = read_json(run / "run.json")
    assert info["status"] == "completed"
    assert [(r["from_epoch"], r["previous_status"]) for r in info["resumes"]] == [
        (PAUSE_EPOCH, "interrupted" if how == "SIGTERM" else "crashed")
    ]
    assert outputs(run) == reference[loop]  # history, metrics, CSV log and final weights, byte for byte


@pytest.mark.slow
@pytest.mark.parametrize(("how", "code"), [("SIGHUP", 129), ("SIGINT", 130)])
def test_hangup_and_ctrl_c_mark_the_run_interrupted(tmp_path, how, code) -> None:
    marker = tmp_path / "marker"
    process = kerasrun("train", str(write_resumable(tmp_path, "fit", marker)), "--runs-dir", str(tmp_path / "runs"))
    wait_for(marker, process)
    process.send_signal(getattr(signal, how))
    assert finish(process)[0] == code
    info = read_json(only_run(tmp_path / "runs") / "run.json")
    assert (info["status"], info["signal"], info["checkpoint_epoch"]) == ("interrupted", how, PAUSE_EPOCH)


KILL_DURING_SAVE = """
import os, sys
import keras

def save_half_then_die(self, path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"PK half a zip")
        f.flush()
    os.kill(os.getpid(), 9)

keras.Model.save = save_half_then_die
from kerasrun.cli import main
sys.argv = ["kerasrun", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_kill_during_the_model_save_then_resume(reference, tmp_path) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    config = write_resumable(tmp_path, "fit", marker)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    out = subprocess.run(
        [PY, "-c", KILL_DURING_SAVE, "train", str(config), "--runs-dir", str(tmp_path / "runs")], env=env, capture_output=True
    )
    assert out.returncode == -signal.SIGKILL
    run = only_run(tmp_path / "runs")
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".model.tmp")]
    assert leftovers and not (run / "model.keras").exists()  # the half-written model never took model.keras's name
    code, _stdout, err = finish(kerasrun("resume", str(run)))
    assert code == 0, err
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # the killed save's temp file is gone
    assert outputs(run) == reference["fit"]


@pytest.mark.slow
def test_launch_passes_sigterm_to_its_workers_and_leaves_no_process(tmp_path) -> None:
    marker = tmp_path / "marker"
    config = write_resumable(tmp_path, "fit", marker)
    launch = kerasrun("launch", "--workers", "2", str(config), "--runs-dir", str(tmp_path / "runs"), "--progress", "plain")
    wait_for(marker, launch, timeout=240)
    workers = children_of(launch.pid)
    assert len(workers) == 2
    launch.send_signal(signal.SIGTERM)
    code, _stdout, err = finish(launch)
    assert code == 143, err
    assert "passed it on to the workers" in err
    assert not [pid for pid in workers if alive(pid)]  # every worker has exited
    chief = only_run(tmp_path / "runs")
    info = read_json(chief / "run.json")  # the chief's folder
    assert info["status"] == "interrupted" and info["signal"] == "SIGTERM"
    from kerasrun.rundir.liveness import resume_blocker

    assert info["placement"]["strategy"] == "CollectiveAllReduceStrategy"
    assert resume_blocker(chief, info) is None  # `kerasrun resume` starts the workers again (tests/train/test_multi_worker_resume.py)
    assert f"`kerasrun resume {chief}` continues the run from its last checkpoint" in err
    evaluated = kerasrun("evaluate", str(chief))
    code, _, err = finish(evaluated)
    assert code == 2 and f"continue it with `kerasrun resume {chief}`" in " ".join(err.split()), err


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.cluster  # the launcher passing signals on is in CI (test_launch_passes_sigterm_...)
def test_workers_stop_when_the_launcher_is_killed(tmp_path) -> None:
    marker = tmp_path / "marker"
    launch = kerasrun("launch", "--workers", "2", str(write_resumable(tmp_path, "fit", marker)), "--runs-dir", str(tmp_path / "runs"))
    wait_for(marker, launch, timeout=240)
    workers = children_of(launch.pid)
    assert len(workers) == 2
    launch.kill()  # kill -9: the launcher can pass nothing on
    launch.wait()
    deadline = time.monotonic() + 60
    while [pid for pid in workers if alive(pid)]:
        assert time.monotonic() < deadline, "a worker kept running without its launcher"
        time.sleep(0.2)
    info = read_json(only_run(tmp_path / "runs") / "run.json")
    assert info["status"] == "interrupted" and info["signal"] == "SIGTERM"  # the kernel's SIGTERM (PR_SET_PDEATHSIG)


def alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
