"""The run lifecycle through the CLI: liveness, checkpoints, resume and continue, signed run folders, loose ends."""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import TESTS, TINY, kerasrun_process, only_run, train

from kerasrun.cli import app
from kerasrun.rundir import checkpoints, trust
from kerasrun.rundir.io import read_json
from kerasrun.rundir.liveness import effective_status
from kerasrun.rundir.record import RunRecord

NOT_SYNTHETIC = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}  # keys to drop from TINY


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained run of the tiny config, shared (copy it before changing it)."""
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("completed")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(TINY, sort_keys=False))
    result = train(CliRunner(), config, folder / "runs")
    assert result.exit_code == 0, result.output
    return only_run(folder / "runs")


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a run folder to change."""
    return Path(shutil.copytree(run, tmp_path / run.name))


# --------------------------------------------------------------------------- liveness


def test_run_json_records_the_process_and_a_signed_record(completed_run) -> None:
    info = read_json(completed_run / "run.json")
    assert info["name"] == "tiny" and info["pid"] > 0 and info["host"] == platform.node() and info["heartbeat"]
    assert info["signature"].startswith("hmac-sha256:") and trust.verify_run(info, (completed_run / "config.yaml").read_bytes()) is None
    assert not (trust.kerasrun_home() / trust.KEY_FILE).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)  # the key is the owner's alone


def test_a_running_run_whose_process_is_gone_is_crashed(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    info = {"status": "running", "pid": int(dead), "host": platform.node(), "pid_started": None}
    assert effective_status(info) == "crashed"
    assert effective_status(dict(info, pid=os.getpid())) == "running"  # this process is alive
    assert effective_status(dict(info, pid=os.getpid(), pid_started=1)) == "crashed"  # a later process took the pid
    old = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
    elsewhere = {"status": "running", "pid": 1, "host": "another-host", "heartbeat": old}
    assert effective_status(elsewhere) == "crashed"  # its heartbeat stopped
    assert effective_status(dict(elsewhere, heartbeat=datetime.now(timezone.utc).isoformat())) == "running"
    assert effective_status({"status": "completed", "pid": int(dead)}) == "completed"


def test_the_heartbeat_thread_refreshes_run_json(tmp_path) -> None:
    record = RunRecord.start(tmp_path, name="x", seed=0, device="/CPU:0", versions={}, command=["kerasrun"])
    first = read_json(tmp_path / "run.json")
    record.info["heartbeat"] = "2000-01-01T00:00:00+00:00"  # so a refresh is visible within a second
    record.start_heartbeat(0.05)
    deadline = time.monotonic() + 60  # a hang guard, generous for a busy machine
    while read_json(tmp_path / "run.json")["heartbeat"] in (first["heartbeat"], "2000-01-01T00:00:00+00:00"):
        assert time.monotonic() < deadline, "the heartbeat was not refreshed"
        time.sleep(0.02)
    record.finish("completed")
    assert read_json(tmp_path / "run.json")["status"] == "completed"
    assert record.beater is not None
    record.beater.join(timeout=5)
    assert not record.beater.is_alive()  # finishing stops the heartbeat


# --------------------------------------------------------------------------- checkpoints, resume, continue


def test_a_checkpoint_after_every_epoch_only_the_latest_kept(completed_run) -> None:
    files = checkpoints.list_checkpoints(completed_run)
    assert [p.name for p in files] == ["epoch-0003.npz"]
    state = checkpoints.read(files[0])
    assert state.epoch == 3 and state.history == read_json(completed_run / "history.json")
    assert [name.split("/")[-1] for name in state.meta["model"]] == ["kernel", "bias", "kernel", "bias"]
    assert [name.split("/")[-1] for name in state.meta["optimizer"][:2]] == ["iteration", "learning_rate"]
    assert len(state.meta["optimizer"]) == 10  # and a momentum and a velocity per weight
    with np.load(files[0], allow_pickle=False) as npz:  # arrays only: loading never unpickles
        assert "meta.json" in npz.files


def test_checkpoint_every_and_keep(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"epochs": 5}, "output": {"checkpoint": {"every": 2, "keep": 2}}}), runs_dir)
    assert result.exit_code == 0, result.output
    assert [p.name for p in checkpoints.list_checkpoints(only_run(runs_dir))] == ["epoch-0004.npz", "epoch-0005.npz"]  # 2, 4 and the last


def test_checkpoint_off_means_no_resume(runner, write_config, runs_dir) -> None:
    callbacks = [{"helpers_custom:InterruptAtEpoch": {"epoch": 2}}]
    result = train(runner, write_config({"train": {"callbacks": callbacks}, "output": {"checkpoint": False}}), runs_dir)
    assert result.exit_code == 130
    run = only_run(runs_dir)
    assert not (run / "checkpoints").exists()
    result = runner.invoke(app, ["resume", str(run)])
    assert result.exit_code == 2 and "no checkpoint to resume from: checkpoints were off" in result.output


def test_continue_a_completed_run_equals_training_longer(runner, write_config, tmp_path) -> None:
    config = write_config(
        {
            "model": {
                "layers": [
                    {"Dense": {"units": 8, "activation": "relu"}},
                    {"Dropout": {"rate": 0.2}},
                    {"Dense": {"units": 3, "activation": "softmax"}},
                ]
            }
        }
    )
    assert train(runner, config, tmp_path / "five", "--set", "train.epochs=5").exit_code == 0
    assert train(runner, config, tmp_path / "three").exit_code == 0
    run = only_run(tmp_path / "three")
    refused = runner.invoke(app, ["resume", str(run)])
    assert refused.exit_code == 2 and "completed its 3 epochs" in refused.output and "--set train.epochs=" in refused.output
    result = runner.invoke(app, ["resume", str(run), "--set", "train.epochs=5", "--progress", "plain"])
    assert result.exit_code == 0, result.output
    assert "epoch 4/5" in result.output and "epoch 1/5" not in result.output
    five = only_run(tmp_path / "five")
    assert (run / "history.json").read_bytes() == (five / "history.json").read_bytes()
    assert (run / "metrics.json").read_bytes() == (five / "metrics.json").read_bytes()
    info = read_json(run / "run.json")
    assert info["epochs_completed"] == 5 and info["resumes"][0]["from_epoch"] == 3 and "epochs: 5" in (run / "config.yaml").read_text()


def test_resume_refuses_to_change_the_experiment(runner, completed_run) -> None:
    result = runner.invoke(app, ["resume", str(completed_run), "--set", "compile.optimizer=sgd", "--set", "seed=3"])
    assert result.exit_code == 2
    assert "compile.optimizer: cannot change on resume" in result.output and "seed: cannot change on resume" in result.output
    assert "model.init_from" in result.output


def test_evaluate_refuses_an_interrupted_run(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"callbacks": [{"helpers_custom:InterruptAtEpoch": {"epoch": 2}}]}}), runs_dir)
    assert result.exit_code == 130
    run = only_run(runs_dir)
    assert f"continue it with `kerasrun resume {run}`" in result.output
    refused = runner.invoke(app, ["evaluate", str(run)])
    assert refused.exit_code == 2 and "the run was interrupted after 2 epochs; only a completed run has its model" in refused.output
    assert f"kerasrun resume {run}" in refused.output


# --------------------------------------------------------------------------- trust


MARKER_CODE = "helpers_custom:touch_marker"


def plant_code(run: Path, marker: Path) -> None:
    """Edit a run's config to name code that leaves a marker file when it runs (as a forged folder would)."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = {"source": "python", "function": MARKER_CODE, "kwargs": {"path": str(marker)}}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("command", ["evaluate", "predict", "resume"])
def test_an_edited_run_folder_runs_no_code(runner, completed_run, tmp_path, command) -> None:
    run = copy_run(completed_run, tmp_path)
    marker = tmp_path / "marker"
    plant_code(run, marker)
    args = {"evaluate": [], "predict": ["--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")], "resume": []}[command]
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    result = runner.invoke(app, [command, str(run), *args])
    assert result.exit_code == 2, result.output
    assert "not trusted: its config.yaml was edited" in result.output and f"kerasrun trust {run}" in result.output
    assert not marker.exists()


def test_a_folder_signed_by_someone_else_runs_no_code_until_trusted(runner, completed_run, tmp_path, monkeypatch) -> None:
    run = copy_run(completed_run, tmp_path)
    marker = tmp_path / "marker"
    plant_code(run, marker)
    monkeypatch.setenv(trust.HOME_ENV, str(tmp_path / "someone-else"))  # their key signs the forged folder
    info = read_json(run / "run.json")
    from kerasrun.rundir.opened import sign_run

    sign_run(run, info, (run / "config.yaml").read_bytes())
    monkeypatch.undo()
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2 and "not signed with your key" in result.output and not marker.exists()
    result = runner.invoke(app, ["evaluate", str(run), "--trust"])  # the user vouches for it: its code runs
    assert marker.exists()
    marker.unlink()
    trusted = runner.invoke(app, ["trust", str(run)])
    assert trusted.exit_code == 0 and f"its config imports {MARKER_CODE}" in trusted.output
    runner.invoke(app, ["evaluate", str(run)])
    assert marker.exists()  # signed with the user's key now


def test_an_unsigned_folder_is_refused(runner, completed_run, tmp_path) -> None:
    run = copy_run(completed_run, tmp_path)
    info = read_json(run / "run.json")
    del info["signature"]
    (run / "run.json").write_text(json.dumps(info))
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2 and "carries no kerasrun signature" in result.output


def test_evaluate_config_matches_the_name_exactly_and_names_unreadable_runs(runner, completed_run, write_config, tmp_path) -> None:
    runs = tmp_path / "runs"
    exact = copy_run(completed_run, runs)
    longer = Path(shutil.copytree(completed_run, runs / "20990101-000000-tiny-longer"))
    info = read_json(longer / "run.json")
    from kerasrun.rundir.opened import sign_run

    sign_run(longer, dict(info, name="tiny-longer"), (longer / "config.yaml").read_bytes())
    (runs / "20990102-000000-broken").mkdir()
    (runs / "20990102-000000-broken" / "run.json").write_text("{not json")
    result = runner.invoke(app, ["evaluate", str(write_config()), "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1]) == read_json(exact / "metrics.json")
    assert "skipped" in result.output and "20990102-000000-broken/run.json" in result.output


# --------------------------------------------------------------------------- config rules and loose ends


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"train": {"initial_epoch": 2}}, "train.initial_epoch", "initial_epoch without model.init_from"),
        ({"train": {"callbacks": [{"CSVLogger": {"filename": "../outside.csv"}}]}}, "train.callbacks[0]", "leaves the run folder"),
        ({"train": {"callbacks": [{"BackupAndRestore": {"backup_dir": "backup"}}]}}, "train.callbacks[0]", "kerasrun resume RUN_DIR"),
        ({"model": {"init_from": {"path": "a", "run": "b"}}}, "model.init_from", "not both"),
    ],
)
def test_lifecycle_config_rules(runner, write_config, runs_dir, changes, key, message) -> None:
    result = train(runner, write_config(changes), runs_dir)
    assert result.exit_code == 2 and f"{key}: " in result.output and message in result.output, result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())


def test_name_option_is_a_string(runner, write_config, runs_dir) -> None:
    for name in ("2024", "yes"):
        result = train(runner, write_config({"train": {"epochs": 1}}), runs_dir / name, "--name", name)
        assert result.exit_code == 0, result.output
        assert read_json(only_run(runs_dir / name) / "run.json")["name"] == name


def test_ctrl_c_before_the_run_folder_exists(runner, write_config, runs_dir) -> None:
    result = train(
        runner, write_config({"data": {"source": "python", "function": "helpers_custom:interrupt_loading", **NOT_SYNTHETIC}}), runs_dir
    )
    assert result.exit_code == 130 and "before a run folder was created" in result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())


def test_a_config_error_found_during_training_marks_the_folder(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"callbacks": ["helpers_custom:ConfigErrorAtTrainBegin"]}}), runs_dir)
    assert result.exit_code == 2 and "found while training" in result.output
    info = read_json(only_run(runs_dir) / "run.json")
    assert info["status"] == "failed" and "found while training" in info["error"]


def test_checkpoint_off_in_yaml(write_config) -> None:
    from kerasrun.config.load import load_config

    path = write_config()
    path.write_text(path.read_text() + "output:\n  checkpoint: off\n")
    assert load_config(path).output.checkpoint is None


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs, so that a run can really fill its disk (needs root; skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_reported_not_swallowed(runner, write_config, small_disk) -> None:
    filler = small_disk / "filler"
    result = train(
        runner, write_config({"train": {"callbacks": [{"helpers_custom:FillDiskAtTrainEnd": {"path": str(filler)}}]}}), small_disk / "runs"
    )
    assert result.exit_code == 1
    assert "training failed" in result.output and "No space left on device" in result.output
    assert "could not record status `failed`" in result.output  # the final status could not be written, and it says so
    info = read_json(only_run(small_disk / "runs") / "run.json")
    assert info["status"] == "running"  # what the disk kept; readers show it as crashed once the process is gone


# --------------------------------------------------------------------------- resume, case by case (in-process Ctrl-C)

NOT_SYNTHETIC_SPLIT = {**NOT_SYNTHETIC, "source": "python", "function": "helpers_custom:blob_dataset"}
RESUME_CASES: dict[str, dict[str, Any]] = {
    # Keras's monitor callbacks flip min_delta's sign when they first pick their comparison: only state is restored.
    "min_delta": {
        "train": {
            "epochs": 8,
            "callbacks": [
                {"EarlyStopping": {"monitor": "val_loss", "patience": 2, "min_delta": 0.05}},
                {"ReduceLROnPlateau": {"monitor": "loss", "patience": 3, "min_delta": 100.0}},
                "helpers_custom:CountingCallback",
            ],
        }
    },
    # Stopped early, then cut off after training ended (while saving): nothing is left to train.
    "early_stop_cut_at_the_end": {
        "train": {"epochs": 8, "callbacks": [{"EarlyStopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}}]}
    },
    # A tf.data source with steps_per_epoch crossing passes, and a reshuffled validation split of it.
    "tf_data_steps_per_epoch": {
        "data": NOT_SYNTHETIC_SPLIT,
        "model": {"inputs": {"x": [2]}},
        "compile": {"loss": "sparse_categorical_crossentropy"},
        "train": {"epochs": 5, "steps_per_epoch": 4, "validation_split": 0.3, "stratify": False},
    },
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resume_equals_the_uninterrupted_run(runner, write_config, tmp_path, case) -> None:
    changes = RESUME_CASES[case]
    at_end = case == "early_stop_cut_at_the_end"
    marker = tmp_path / "interrupted"
    interrupt = {"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": -1 if at_end else 3}}
    train_section = dict(changes["train"], callbacks=[*changes["train"].get("callbacks", []), interrupt])
    config = write_config({**changes, "train": train_section})
    marker.touch()  # the reference run is not interrupted
    assert train(runner, config, tmp_path / "reference").exit_code == 0
    marker.unlink()
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 130, result.output
    run = only_run(tmp_path / "runs")
    resumed = runner.invoke(app, ["resume", str(run), "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    reference = only_run(tmp_path / "reference")
    for name in ("history.json", "metrics.json"):
        if (reference / name).exists():  # a tf.data source has no test split, so no metrics.json
            assert (run / name).read_bytes() == (reference / name).read_bytes(), name
        else:
            assert not (run / name).exists()
    if at_end:  # stopped early: resume trained nothing more, it saved and evaluated
        assert not [line for line in resumed.output.splitlines() if line.startswith("epoch ")]
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and "signal" not in info and "checkpoint_epoch" not in info  # no leftovers of the interruption
    assert info["resumes"][0]["previous_timings"] is not None


def test_resume_without_checkpoints_keeps_callback_state(runner, write_config, tmp_path) -> None:
    case = RESUME_CASES["min_delta"]
    marker = tmp_path / "interrupted"
    config = write_config(
        {
            "train": dict(
                case["train"],
                callbacks=[*case["train"]["callbacks"], {"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 3}}],
            )
        }
    )
    marker.touch()
    assert train(runner, config, tmp_path / "reference").exit_code == 0
    marker.unlink()
    assert train(runner, config, tmp_path / "runs").exit_code == 130
    run = only_run(tmp_path / "runs")
    assert runner.invoke(app, ["resume", str(run), "--set", "output.checkpoint=false"]).exit_code == 0
    assert (run / "history.json").read_bytes() == (only_run(tmp_path / "reference") / "history.json").read_bytes()


def test_a_moved_run_folder_resumes_into_itself(runner, write_config, tmp_path) -> None:
    marker = tmp_path / "interrupted"
    callbacks = [
        {"ModelCheckpoint": {"filepath": "best-{epoch}.keras", "monitor": "val_loss", "save_best_only": True}},
        {"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 2}},
    ]
    assert train(runner, write_config({"train": {"epochs": 4, "callbacks": callbacks}}), tmp_path / "runs").exit_code == 130
    old = only_run(tmp_path / "runs")
    moved = Path(shutil.move(str(old), str(tmp_path / "moved")))
    result = runner.invoke(app, ["resume", str(moved)])
    assert result.exit_code == 0, result.output
    assert not old.exists()  # the checkpoint holds the callback's state, not its paths
    assert any(p.name.startswith("best-") for p in moved.iterdir())


def test_a_run_folder_in_use_is_not_resumed(runner, write_config, tmp_path) -> None:
    from kerasrun.rundir.liveness import lock_run_dir

    marker = tmp_path / "interrupted"
    config = write_config({"train": {"callbacks": [{"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 2}}]}})
    assert train(runner, config, tmp_path / "runs").exit_code == 130
    run = only_run(tmp_path / "runs")
    held = lock_run_dir(run)  # as another process resuming it right now would
    try:
        result = runner.invoke(app, ["resume", str(run)])
        assert result.exit_code == 2 and "is training in this run folder" in result.output
    finally:
        os.close(held)


def test_interrupted_while_the_folder_is_set_up(runner, write_config, runs_dir, monkeypatch) -> None:
    from kerasrun.rundir.record import RunRecord

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RunRecord, "start", classmethod(interrupted))
    result = train(runner, write_config(), runs_dir)
    assert result.exit_code == 130 and "before a run folder was created" in result.output
    assert list(runs_dir.iterdir()) == []  # the half-made folder was removed, not left as a run


# --------------------------------------------------------------------------- the signing key


def test_the_signing_key_is_made_once_even_by_concurrent_processes(tmp_path) -> None:
    code = "from kerasrun.rundir import trust; print(trust.secret_key().hex())"
    env = {**os.environ, trust.HOME_ENV: str(tmp_path / "home")}
    processes = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(8)]
    keys = {p.communicate()[0].strip() for p in processes}
    assert len(keys) == 1 and len(bytes.fromhex(keys.pop())) == 32
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["secret.key"]  # no temp files left


def test_a_damaged_key_is_a_clear_error(runner, completed_run, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(trust.HOME_ENV, str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "secret.key").write_text("")  # e.g. a process killed while making it, by an older kerasrun
    result = runner.invoke(app, ["evaluate", str(completed_run)])
    assert result.exit_code == 2 and "secret.key is unusable (it holds 0 bytes, not 32); delete it" in result.output


# --------------------------------------------------------------------------- the watchdog, in real processes


def test_another_signal_does_not_trigger_the_watchdog(write_config, tmp_path) -> None:
    config = write_config({"train": {"callbacks": [{"helpers_custom:OtherSignalAtEpoch": {"epoch": 1, "seconds": 2.5}}]}})
    out = kerasrun_process(["train", str(config), "--runs-dir", str(tmp_path / "runs")], env={"KERASRUN_STOP_GRACE_SECONDS": "1"})
    assert out.returncode == 0, out.stderr
    assert read_json(only_run(tmp_path / "runs") / "run.json")["status"] == "completed"


@pytest.mark.slow
def test_a_stuck_main_thread_is_marked_and_ended_by_the_watchdog(write_config, tmp_path) -> None:
    marker = tmp_path / "stuck"
    config = write_config({"train": {"callbacks": [{"helpers_custom:StuckAtEpoch": {"epoch": 1, "marker": str(marker)}}]}})
    env = {**os.environ, "KERASRUN_STOP_GRACE_SECONDS": "2", "PYTHONPATH": str(TESTS)}
    process = subprocess.Popen([sys.executable, "-m", "kerasrun", "train", str(config), "--runs-dir", str(tmp_path / "runs")], env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.terminate()
    # Ended by the watchdog after the grace period (2 s): the callback's 120 s sleep would outlast the timeout. `forced` below
    # says the watchdog did it.
    assert process.wait(timeout=60) == 143
    info = read_json(only_run(tmp_path / "runs") / "run.json")
    assert (info["status"], info["signal"], info["forced"], info["epochs_completed"]) == ("interrupted", "SIGTERM", True, 1)


# --------------------------------------------------------------------------- found by trying it as a new user


def test_a_run_stopped_early_is_not_continued_by_more_epochs(runner, write_config, tmp_path) -> None:
    stop_at_2 = [{"EarlyStopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}}]
    assert train(runner, write_config({"train": {"epochs": 8, "callbacks": stop_at_2}}), tmp_path / "runs").exit_code == 0
    run = only_run(tmp_path / "runs")
    result = runner.invoke(app, ["resume", str(run), "--set", "train.epochs=20"])
    assert result.exit_code == 2 and "stopped the run after epoch 2: planned longer, it would have stopped there too" in result.output


def test_init_from_a_run_that_did_not_complete_takes_its_checkpoint(runner, write_config, tmp_path) -> None:
    marker = tmp_path / "interrupted"
    named = {
        "model": {
            "layers": [
                {"Dense": {"units": 8, "activation": "relu", "name": "hidden"}},
                {"Dense": {"units": 3, "activation": "softmax", "name": "head"}},
            ]
        }
    }
    callbacks = [{"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 2}}]
    assert train(runner, write_config({**named, "train": {"callbacks": callbacks}}), tmp_path / "base").exit_code == 130
    base = only_run(tmp_path / "base")
    result = train(runner, write_config({**named, "train": {"epochs": 1}}, "next.yaml"), tmp_path / "next", "--init-from", str(base))
    assert result.exit_code == 0, result.output
    assert "weights from" in result.output and "epoch-0002.npz: loaded hidden, head" in result.output
    assert read_json(only_run(tmp_path / "next") / "run.json")["init_from"]["loaded"] == ["hidden", "head"]


def test_evaluate_says_which_run_to_resume_and_refuses_set_on_a_folder(runner, write_config, tmp_path) -> None:
    marker = tmp_path / "interrupted"
    config = write_config({"train": {"callbacks": [{"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 2}}]}})
    assert train(runner, config, tmp_path / "runs").exit_code == 130
    run = only_run(tmp_path / "runs")
    result = runner.invoke(app, ["evaluate", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and f"the newest, {run}, was interrupted: `kerasrun resume {run}` continues it" in result.output
    result = runner.invoke(app, ["evaluate", str(run), "--set", "data.name=iris"])
    assert result.exit_code == 2 and "apply to a CONFIG; a run folder is evaluated as it was trained" in result.output


def test_without_checkpoints_the_interruption_says_it_cannot_be_resumed(runner, write_config, runs_dir) -> None:
    callbacks = [{"helpers_custom:InterruptAtEpoch": {"epoch": 2}}]
    result = train(runner, write_config({"train": {"callbacks": callbacks}, "output": {"checkpoint": False}}), runs_dir)
    assert result.exit_code == 130 and "it can't be resumed: it has no checkpoint" in result.output
    assert "kerasrun resume" not in result.output


def test_run_folder_files_follow_the_umask(completed_run) -> None:
    for name in ("run.json", "config.yaml", "history.json", "metrics.json"):
        assert (completed_run / name).stat().st_mode & 0o777 == 0o666 & ~current_umask(), name  # readable by a colleague


def current_umask() -> int:
    """This process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_closed_pipe_does_not_fail_the_run(write_config, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kerasrun",
            "train",
            str(write_config({"train": {"epochs": 6}})),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--progress",
            "plain",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    process.stdout.readline()  # `| head -1`: read the first line, then go away
    process.stdout.close()
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    assert read_json(only_run(tmp_path / "runs") / "run.json")["status"] == "completed"


def test_a_module_the_run_needs_that_cannot_be_imported_is_named(runner, write_config, tmp_path, monkeypatch) -> None:
    (tmp_path / "mymodule_for_test.py").write_text(
        "import keras\n\ndef half_mse(y_true, y_pred):\n    return 0.5 * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    layers = [{"Dense": {"units": 3, "activation": "softmax"}}]
    config = write_config(
        {
            "model": {"layers": layers},
            "compile": {"loss": "mymodule_for_test:half_mse", "metrics": []},
            "data": {"preprocess": [{"one_hot": 3}]},
        }
    )
    assert train(runner, config, tmp_path / "runs", "--set", "train.epochs=1").exit_code == 0
    monkeypatch.undo()
    sys.modules.pop("mymodule_for_test", None)
    result = runner.invoke(app, ["evaluate", str(only_run(tmp_path / "runs"))])
    assert result.exit_code == 2 and "`mymodule_for_test:half_mse` (named in the config) cannot be imported" in result.output
    assert "run kerasrun from the folder it was trained in" in result.output
