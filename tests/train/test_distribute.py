"""Devices and tf.distribute on CPU: mirrored over two logical CPUs, `kerasrun launch` multi-worker, bad input.

Logical devices and collective ops must be configured before TensorFlow starts, so these run in fresh
processes (`python -m kerasrun`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import kerasrun_process, only_run, skip_if_a_gpu_is_visible

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

# The same global batch on one device and split over replicas: equal up to float summation order.
TOLERANCE = 1e-4  # relative, per epoch and key; shuffling is off so every run sees the same batches
NO_SHUFFLE = ["--set", "train.shuffle=false", "--set", "train.epochs=3"]


def train_process(config: Path, runs: Path, *args: str) -> dict:
    """Train in a subprocess; return the run's history and run.json."""
    out = kerasrun_process(["train", str(config), "--runs-dir", str(runs), "--progress", "plain", *args])
    assert out.returncode == 0, out.stderr[-3000:]
    run = only_run(runs)
    return {"history": read_json(run / "history.json"), "run": read_json(run / "run.json")}


def assert_close(a: dict, b: dict) -> None:
    """Histories with the same keys and values within TOLERANCE."""
    assert a.keys() == b.keys()
    for key in a:
        for x, y in zip(a[key], b[key], strict=True):
            assert abs(x - y) <= TOLERANCE * max(1.0, abs(y)), (key, a[key], b[key])


def test_logical_cpus_without_mirrored_trains_with_a_warning(write_config, tmp_path) -> None:
    # It splits the CPU but one device trains: the setting changes nothing, and is said to (not refused: a run folder's config stays valid).
    config = write_config({"runtime": {"logical_cpus": 2}, "train": {"epochs": 1}})
    result = kerasrun_process(["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--progress", "none"])
    assert result.returncode == 0, result.stderr
    assert "warning: runtime.logical_cpus changes nothing with strategy: none (only mirrored replicates over them)" in result.stderr


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(write_config, tmp_path) -> None:
    config = write_config()
    single = train_process(config, tmp_path / "one", *NO_SHUFFLE)
    for loop in ("fit", "custom"):
        mirrored = train_process(config, tmp_path / loop, *NO_SHUFFLE, "--set", "runtime.strategy=mirrored", "--set", f"train.loop={loop}")
        placement = mirrored["run"]["placement"]
        assert placement["strategy"] == "MirroredStrategy" and placement["replicas"] == 2 and len(placement["devices"]) == 2
        assert_close(mirrored["history"], single["history"])


@pytest.mark.slow
def test_custom_loop_equals_fit_under_mirrored(write_config, tmp_path) -> None:
    config = write_config(
        {
            "model": {
                "layers": [
                    {"Dense": {"units": 16, "activation": "relu"}},
                    {"Dropout": {"rate": 0.3}},
                    {"Dense": {"units": 3, "activation": "softmax"}},
                ]
            }
        }
    )
    fit = train_process(config, tmp_path / "fit", "--set", "runtime.strategy=mirrored")
    custom = train_process(config, tmp_path / "custom", "--set", "runtime.strategy=mirrored", "--set", "train.loop=custom")
    assert custom["history"] == fit["history"]


@pytest.mark.slow
def test_launch_two_workers_matches_single_process(write_config, tmp_path) -> None:
    config = write_config()
    single = train_process(config, tmp_path / "one", *NO_SHUFFLE)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = kerasrun_process(
        ["launch", "--workers", "2", str(config), "--runs-dir", str(tmp_path / "launch"), "--progress", "plain", *NO_SHUFFLE],
        env={"TMPDIR": str(scratch)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert not list(scratch.glob("kerasrun-worker-*"))  # the other worker's scratch folder is removed
    run = only_run(tmp_path / "launch")  # only the chief keeps a run folder
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and info["placement"]["replicas"] == 2 and info["loop"] == "custom"
    assert_close(read_json(run / "history.json"), single["history"])
    assert "epoch 3/3" in out.stdout


@pytest.mark.slow
@pytest.mark.cluster  # a killed worker is in CI through test_multi_worker_resume (kill -9, then resume)
def test_a_dead_worker_fails_the_launch(write_config, tmp_path) -> None:
    config = write_config({"train": {"callbacks": [{"helpers_custom:FailOnWorker": {"index": 1}}]}})
    out = kerasrun_process(["launch", "--workers", "2", str(config), "--runs-dir", str(tmp_path / "runs"), "--timeout", "120"], timeout=200)
    assert out.returncode == 1
    assert "worker 1 exited with code 1; stopped the others" in out.stderr and "worker 1 gives up" in out.stderr


def test_a_config_error_the_workers_find_exits_the_launch_with_2(write_config, tmp_path) -> None:
    """A train.step that doesn't import passes the launcher's config check, and only building the loop finds it: still exit 2, located."""
    config = write_config({"train": {"step": "helpers_custom:no_such_step"}})
    out = kerasrun_process(["launch", "--workers", "2", str(config), "--runs-dir", str(tmp_path / "runs"), "--timeout", "120"], timeout=200)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "exited with code 2; stopped the others" in out.stderr
    assert "train.step" in out.stderr and "has no attribute `no_such_step`" in out.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # nothing written


def test_multi_worker_needs_tf_config(runner, write_config, runs_dir, monkeypatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = runner.invoke(app, ["train", str(write_config()), "--runs-dir", str(runs_dir), "--set", "runtime.strategy=multi_worker"])
    assert result.exit_code == 2 and "needs the TF_CONFIG environment variable" in result.output and "kerasrun launch" in result.output
    for bad, message in (
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {}}', "TF_CONFIG needs `cluster`"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "is not in the cluster"),
    ):
        monkeypatch.setenv("TF_CONFIG", bad)
        result = runner.invoke(app, ["train", str(write_config()), "--runs-dir", str(runs_dir), "--set", "runtime.strategy=multi_worker"])
        assert result.exit_code == 2 and message in result.output, result.output
    assert list(runs_dir.iterdir()) == []


def test_batch_must_split_over_replicas(write_config, tmp_path) -> None:
    out = kerasrun_process(
        [
            "train",
            str(write_config()),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--set",
            "runtime.strategy=mirrored",
            "--set",
            "train.batch_size=33",
        ]
    )
    assert out.returncode == 2 and "the global batch 33 does not split evenly over 2 replicas" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_device_option_without_a_gpu(runner, write_config, runs_dir) -> None:
    skip_if_a_gpu_is_visible()
    result = runner.invoke(app, ["train", str(write_config()), "--runs-dir", str(runs_dir), "--device", "gpu:1"])
    assert result.exit_code == 2 and "visible devices: /physical_device:CPU:0" in result.output
    result = runner.invoke(app, ["train", str(write_config()), "--runs-dir", str(runs_dir), "--device", "tpu"])
    assert result.exit_code == 2 and "runtime.device" in result.output


def test_deterministic_and_placement_are_recorded(runner, write_config, runs_dir) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(write_config()),
            "--runs-dir",
            str(runs_dir),
            "--set",
            "runtime.deterministic=true",
            "--set",
            "runtime.strategy=one_device",
        ],
    )
    assert result.exit_code == 0, result.output
    info = read_json(only_run(runs_dir) / "run.json")
    assert info["deterministic"] is True and info["placement"]["strategy"] == "OneDeviceStrategy" and info["loop"] == "custom"
