"""Saved on preemption: SIGTERM in the middle of an epoch writes a checkpoint at the next step, and the resume continues there.

The acceptance: the interrupted run exits 143 with `epoch-NNNN-step-SSSSSS.npz`, and after `kerasrun resume`
its history.json and metrics.json are the uninterrupted run's, byte for byte — with either loop, one
fresh pass per epoch or an endless stream (`steps_per_epoch`), several steps per call, Dropout, a
LearningRateScheduler (its on_epoch_begin runs again in the resumed epoch) and a user step. Real signals, in-process (CliRunner runs in the main thread, where Python's handlers run).
Multi-worker agreement: tests/train/test_multi_worker_resume.py; every stateful callback: test_resume.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import only_run, train

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

SIGNAL_EPOCH, SIGNAL_BATCH = 1, 5  # after the 6th batch of the second epoch (12 batches of 16 per epoch)
CASES: dict[str, dict[str, Any]] = {
    "fit": {"train": {"loop": "fit"}, "compile": {"steps_per_execution": 1}},
    "custom": {"train": {"loop": "custom"}, "compile": {"steps_per_execution": 2}},
    "fit-stream-spe": {"train": {"loop": "fit", "steps_per_epoch": 7}, "compile": {"steps_per_execution": 3}},
    "fit-unbuilt": {"train": {"loop": "fit"}, "compile": {"steps_per_execution": 2}},  # a subclassed model its factory left unbuilt
    # The custom loop's ArrayFeed: epochs cross pass boundaries (9 of 12 batches), and 20 steps with 10 of validation.
    "custom-stream-spe": {"train": {"loop": "custom", "steps_per_epoch": 9}, "compile": {"steps_per_execution": 3}},
    "custom-stream-long": {
        "train": {"loop": "custom", "steps_per_epoch": 20, "validation_steps": 10},
        "compile": {"steps_per_execution": 2},
    },
    "custom-step": {"train": {"loop": "custom", "step": "helpers_custom:step_with_two_logs"}, "compile": {"steps_per_execution": 4}},
}


@pytest.fixture(autouse=True)
def watchdog_never_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a signal, kerasrun's watchdog stays armed until the process exits (a CLI exits at once): not this test process."""
    from kerasrun.train import signals

    monkeypatch.setattr(signals, "FORCE_EXIT_SECONDS", 1e6)


def config_for(case: str, *extra_callbacks: dict[str, Any]) -> dict[str, Any]:
    """The tiny experiment with Dropout and the case's loop, signalling itself mid-epoch when KERASRUN_TEST_SIGNAL is set."""
    changes = CASES[case]
    model: dict[str, Any] = {
        "layers": [
            {"Dense": {"units": 8, "activation": "relu"}},
            {"Dropout": {"rate": 0.3}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    }
    if case == "fit-unbuilt":
        model = {
            "factory": "helpers_custom:unbuilt_subclassed_model",
            "kwargs": {"hidden": 8, "classes": 3},
            "inputs": None,
            "layers": None,
        }
    # The scheduler acts in on_epoch_begin, which the resumed epoch runs again: the checkpoint's rate must win.
    schedule = {"LearningRateScheduler": {"schedule": "helpers_custom:halve_every_epoch"}}
    callback = {"helpers_custom:SignalAtStep": {"epoch": SIGNAL_EPOCH, "batch": SIGNAL_BATCH}}
    train_spec = {"epochs": 3, **changes["train"], "callbacks": [schedule, callback, *extra_callbacks]}
    return {"model": model, "train": train_spec, "compile": changes.get("compile", {}), "output": {"checkpoint": {"every": 1, "keep": 5}}}


def outputs(run: Path) -> dict[str, bytes]:
    """What must be identical between the uninterrupted and the resumed run."""
    return {name: (run / name).read_bytes() for name in ("history.json", "metrics.json") if (run / name).exists()}


@pytest.mark.parametrize("case", [*CASES])
def test_sigterm_mid_epoch_checkpoints_there_and_resumes_byte_identical(runner, write_config, tmp_path, monkeypatch, case) -> None:
    seen = tmp_path / "batches.txt"  # every (epoch, batch, steps) a callback is told: the resumed run must go on telling them
    config = write_config(config_for(case, {"helpers_custom:RecordBatches": {"path": str(seen)}}))
    reference = train(runner, config, tmp_path / "reference")
    assert reference.exit_code == 0, reference.output
    expected = outputs(only_run(tmp_path / "reference"))
    expected_batches = seen.read_text()
    seen.unlink()

    monkeypatch.setenv("KERASRUN_TEST_SIGNAL", "1")
    interrupted = train(runner, config, tmp_path / "runs")
    monkeypatch.delenv("KERASRUN_TEST_SIGNAL", raising=False)  # the callback drops it once it has signalled
    assert interrupted.exit_code == 143, interrupted.output
    run = only_run(tmp_path / "runs")
    info = read_json(run / "run.json")
    spe = CASES[case]["compile"]["steps_per_execution"]
    # The signal is taken at the end of the call holding batch 5.
    step = (SIGNAL_BATCH // spe + 1) * spe
    assert (info["status"], info["signal"], info["epochs_completed"]) == ("interrupted", "SIGTERM", SIGNAL_EPOCH)
    assert (info["checkpoint_epoch"], info["checkpoint_step"]) == (SIGNAL_EPOCH, step)
    assert (run / "checkpoints" / f"epoch-{SIGNAL_EPOCH:04d}-step-{step:06d}.npz").is_file()
    assert not (run / "model.keras").exists()

    resumed = runner.invoke(app, ["resume", str(run), "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    assert f"at step {step} of epoch {SIGNAL_EPOCH + 1} of 3" in resumed.output
    assert outputs(run) == expected
    assert seen.read_text() == expected_batches  # the interrupted run's batches, then the resumed run's


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_sigterm_during_validation_stops_at_once_with_the_last_epochs_checkpoint(runner, write_config, tmp_path, monkeypatch, loop) -> None:
    config = config_for("fit")
    config["train"] = dict(
        config["train"], loop=loop, callbacks=[{"helpers_custom:SignalAtStep": {"epoch": 1, "batch": 0, "validation": True}}]
    )
    monkeypatch.setenv("KERASRUN_TEST_SIGNAL", "1")
    result = train(runner, write_config(config), tmp_path / "runs")
    monkeypatch.delenv("KERASRUN_TEST_SIGNAL", raising=False)
    assert result.exit_code == 143, result.output
    info = read_json(only_run(tmp_path / "runs") / "run.json")
    # Validation can outlast a grace period: the epoch in progress is dropped, the previous epoch's checkpoint stays.
    assert (info["status"], info["epochs_completed"], info["checkpoint_epoch"]) == ("interrupted", 1, 1)
    assert "checkpoint_step" not in info
