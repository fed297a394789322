"""Two workers on TFRecord shards (`kerasrun launch --workers 2`): each reads its own files (data_sharding: file), the checking
pass is split between them, a preempted run resumes byte for byte, and a broken shard checked by the other worker is still
reported, located, with nothing written."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SHARDED, finish, merge, only_run, wait_for, write_records
from test_multi_worker_resume import kerasrun, launch, outputs, resume
from test_resume import children_of

from kerasrun.rundir.io import read_json

PAUSE_EPOCH = 2
MULTI_WORKER: dict[str, Any] = {
    "model": {
        "layers": [
            {"Dense": {"units": 16, "activation": "relu"}},
            {"Dropout": {"rate": 0.2}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 4, "batch_size": 16},
    "runtime": {"strategy": "multi_worker"},
}


def write_config(folder: Path, marker: Path) -> Path:
    """The sharded config for two workers, pausing at PAUSE_EPOCH until `marker` exists; its shards beside it."""
    write_records(folder / "shards")
    config = merge(SHARDED, MULTI_WORKER)
    config["train"]["callbacks"] = [{"helpers_custom:PauseAtEpoch": {"epoch": PAUSE_EPOCH, "marker": str(marker)}}]
    path = folder / "sharded.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted two-worker run's folder (its marker exists beforehand: it never pauses)."""
    folder = tmp_path_factory.mktemp("sharded-reference")
    marker = folder / "marker"
    marker.touch()
    code, _out, err = finish(launch(folder, write_config(folder, marker)), timeout=240)
    assert code == 0, err
    return only_run(folder / "runs")


@pytest.mark.slow
def test_each_worker_reads_its_own_files_and_a_preempted_run_resumes_byte_for_byte(reference: Path, tmp_path: Path) -> None:
    info = read_json(reference / "run.json")
    assert info["status"] == "completed" and info["cluster"]["data_sharding"] == "file"
    assert len(read_json(reference / "history.json")["loss"]) == 4
    marker = tmp_path / "marker"
    launcher = launch(tmp_path, write_config(tmp_path, marker))
    wait_for(marker, launcher, timeout=240)
    for pid in sorted(children_of(launcher.pid)):
        os.kill(pid, signal.SIGTERM)  # as Slurm and Kubernetes stop a job: every worker at once
    finish(launcher, timeout=240)
    run = only_run(tmp_path / "runs")
    assert read_json(run / "run.json")["status"] == "interrupted"
    code, _out, err = resume(tmp_path, run)
    assert code == 0, err
    assert outputs(run) == outputs(reference)


@pytest.mark.slow
def test_a_broken_shard_that_the_other_worker_checks_is_reported_and_nothing_is_written(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "marker")
    shard = tmp_path / "shards" / "part-1.tfrecord"  # worker 1 checks shards 1 and 3; the chief reports what it found
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 5])  # cut inside a record's header
    code, _out, err = finish(kerasrun(tmp_path, "launch", "--workers", "2", str(config), "--runs-dir", str(tmp_path / "runs")), timeout=240)
    assert code != 0
    assert "data.files: part-1.tfrecord: record 31" in err and "is cut off" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()
