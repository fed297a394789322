"""The multi-worker cluster from TF_CONFIG or a (fake) Slurm job step, and how a host's GPUs are shared out among its workers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers import kerasrun_process, only_run, write_tiny

from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError
from kerasrun.rundir.io import read_json
from kerasrun.train.cluster import resolve_cluster, share_local_gpus

GPUS = [f"/physical_device:GPU:{i}" for i in range(8)]


def test_every_local_gpu_or_an_even_share_of_them() -> None:
    one_per_node = {"worker": ["n1:8888", "n2:8888"]}
    assert share_local_gpus(GPUS, one_per_node, "worker", 1) == GPUS  # one task per node: all eight
    two_per_node = {"worker": ["n1:8888", "n1:8889", "n2:8888", "n2:8889"]}
    assert share_local_gpus(GPUS, two_per_node, "worker", 1) == GPUS[4:]
    assert share_local_gpus(GPUS, two_per_node, "worker", 2) == GPUS[:4]
    local = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}  # `kerasrun launch`: all on one host
    assert [share_local_gpus(GPUS, local, job, i) for job, i in (("chief", 0), ("worker", 0), ("worker", 1))] == [
        GPUS[:2],
        GPUS[2:4],
        GPUS[4:6],
    ]
    own = GPUS[3:4]  # Slurm gave each task its own GPU (CUDA_VISIBLE_DEVICES): each task takes what it sees
    assert share_local_gpus(own, two_per_node, "worker", 1) == own
    assert share_local_gpus([], one_per_node, "worker", 0) == []


def fake_slurm(monkeypatch: pytest.MonkeyPatch, nodes: str, tasks_per_node: str, tasks: int, procid: int) -> None:
    """The variables `srun` sets for a task (as TensorFlow's own resolver tests fake them), and no TF_CONFIG."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name, value in {
        "SLURM_JOB_ID": "77",
        "SLURM_PROCID": str(procid),
        "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_STEP_NODELIST": nodes,
        "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
    }.items():
        monkeypatch.setenv(name, value)


def test_a_slurm_job_step_gives_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write_tiny(tmp_path, {"runtime": {"strategy": "multi_worker"}}))
    fake_slurm(monkeypatch, "n[1-2]", "2(x2)", 4, 3)
    resolver = resolve_cluster(config)
    assert type(resolver).__name__ == "SlurmClusterResolver"
    assert resolver.cluster_spec().as_dict() == {"worker": ["n1:8888", "n1:8889", "n2:8888", "n2:8889"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}')
    assert type(resolve_cluster(config)).__name__ == "TFConfigClusterResolver"  # a TF_CONFIG that is there wins
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.delenv("SLURM_STEP_NODELIST")  # sbatch's own shell, not an srun step
    with pytest.raises(ConfigError, match="needs a job step: SLURM_STEP_NODELIST not set"):
        resolve_cluster(config)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_one_worker_trains_under_a_fake_slurm_step(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"runtime": {"strategy": "multi_worker"}, "train": {"epochs": 1}})
    port = free_port()
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_PROCID": "0",
        "SLURM_STEP_NUM_TASKS": "1",
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_STEP_TASKS_PER_NODE": "1",
        "KERASRUN_SLURM_PORT": str(port),
        "TF_CONFIG": "",
    }
    out = kerasrun_process(["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--progress", "plain"], env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    info = read_json(only_run(tmp_path / "runs") / "run.json")
    assert info["status"] == "completed" and info["slurm"]["job_id"] == "77"
    assert info["cluster"] == {"workers": 1, "task_type": "worker", "task_index": 0, "resolver": "Slurm", "data_sharding": "data"}
    placement = info["placement"]
    assert placement["cluster_spec"] == {"worker": [f"localhost:{port}"]} and placement["local_gpus"] == []
    assert placement["strategy"] == "CollectiveAllReduceStrategy"
