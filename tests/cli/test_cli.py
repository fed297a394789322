"""The CLI end to end (Typer's CliRunner): train, run folder, evaluate, predict, validate, show, schema, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO, only_run, skip_if_a_gpu_is_visible, train

from kerasrun.build.model import effective_steps_per_execution
from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.rundir import checkpoints
from kerasrun.rundir.io import read_json


def test_train_writes_a_complete_run_folder(runner, write_config, runs_dir, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal (without one, rich takes 80): summary.txt keeps every column
    result = train(runner, write_config(), runs_dir, "--device", "cpu")  # the device recorded below
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    assert run.name.endswith("-tiny")
    assert {"config.yaml", "history.json", "metrics.json", "model.keras", "summary.txt", "run.json"} <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp files left behind
    history = read_json(run / "history.json")
    assert history["epoch"] == [1, 2, 3]
    assert set(history) == {"epoch", "loss", "sparse_categorical_accuracy", "val_loss", "val_sparse_categorical_accuracy"}
    info = read_json(run / "run.json")
    assert info["status"] == "completed" and info["seed"] == 7 and info["device"] == "/CPU:0"
    assert {"kerasrun", "tensorflow", "keras", "python", "git_commit"} <= set(info["environment"])
    assert info["ended"] and info["timings"]["fit_s"] > 0 and info["epochs_completed"] == 3
    metrics = read_json(run / "metrics.json")
    assert set(metrics) == {"loss", "sparse_categorical_accuracy"} and metrics["sparse_categorical_accuracy"] > 0.8
    summary = (run / "summary.txt").read_text()
    assert "Total params" in summary and "Param #" in summary and max(len(line) for line in summary.splitlines()) == 100
    assert os.environ["COLUMNS"] == "60"  # put back
    lines = result.output.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 3 and "\r" not in result.output and "\b" not in result.output
    assert "sparse_categorical_accuracy" in result.output and f"done: {run}" in result.output


def test_same_config_gives_identical_history(runner, write_config, runs_dir, tmp_path) -> None:
    config = write_config(
        {
            "model": {
                "layers": [
                    {"Dense": {"units": 8, "activation": "relu"}},
                    {"Dropout": {"rate": 0.3}},
                    {"Dense": {"units": 3, "activation": "softmax"}},
                ]
            }
        }
    )
    other = tmp_path / "other_runs"
    assert train(runner, config, runs_dir).exit_code == 0
    assert train(runner, config, other).exit_code == 0
    assert read_json(only_run(runs_dir) / "history.json") == read_json(only_run(other) / "history.json")


def test_runs_never_overwrite(runner, write_config, runs_dir) -> None:
    config = write_config()
    for _ in range(2):
        assert train(runner, config, runs_dir, "--set", "train.epochs=1").exit_code == 0
    assert len(list(runs_dir.iterdir())) == 2


def test_resolved_config_applies_overrides_and_name(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config(), runs_dir, "--set", "train.epochs=1", "--name", "renamed")
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    assert run.name.endswith("-renamed")
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["name"] == "renamed" and resolved["train"]["epochs"] == 1  # the overrides
    assert resolved["compile"]["steps_per_execution"] == 32 and resolved["output"]["checkpoint"] == {"every": 1, "keep": 1}  # defaults
    assert resolved["data"]["generator"] == "blobs" and resolved["train"]["validation_split"] == 0.25  # the file's own keys


def test_evaluate_matches_metrics_json(runner, write_config, runs_dir) -> None:
    config = write_config()
    assert train(runner, config, runs_dir).exit_code == 0
    run = only_run(runs_dir)
    result = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == read_json(run / "metrics.json")
    by_config = runner.invoke(app, ["evaluate", str(config), "--runs-dir", str(runs_dir), "--json"])
    assert json.loads(by_config.output) == read_json(run / "metrics.json")  # no note: the run was trained from this config
    # Another config of the same name finds the same run: said on stderr, the JSON alone on stdout.
    other = write_config({"train": {"epochs": 5}, "compile": {"optimizer": "sgd"}}, name="other.yaml")
    by_other = runner.invoke(app, ["evaluate", str(other), "--runs-dir", str(runs_dir), "--json"])
    assert by_other.exit_code == 0 and json.loads(by_other.stdout) == read_json(run / "metrics.json"), by_other.output
    assert (
        f"note: {run.name}, the newest completed run named `tiny`, was trained from another config than {other}: "
        "they differ at compile.optimizer, train.epochs"
    ) in by_other.stderr
    validation = runner.invoke(app, ["evaluate", str(run), "--split", "validation"])
    history = read_json(run / "history.json")
    assert validation.exit_code == 0 and f"{history['val_loss'][-1]:.4f}" in validation.output


def test_evaluate_errors(runner, write_config, tmp_path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "not a kerasrun run folder" in result.output
    result = runner.invoke(app, ["evaluate", str(write_config()), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no completed run named `tiny`" in result.output


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_predict_files(runner, write_config, runs_dir, tmp_path, suffix) -> None:
    assert train(runner, write_config({"data": {"preprocess": [{"scale": 2.0}]}}), runs_dir).exit_code == 0
    run = only_run(runs_dir)
    x = np.array([[0, 0], [8, 0], [0, 8]], dtype=np.float32)  # blob centres x2, undone by the run's scale step
    source = tmp_path / f"in{suffix}"
    if suffix == ".npy":
        np.save(source, x)
    elif suffix == ".npz":
        np.savez(source, x=x)
    else:
        source.write_text("a,b\n" + "\n".join(",".join(str(v) for v in row) for row in x) + "\n")
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["predict", str(run), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    if suffix == ".npy":
        predictions = np.load(out)
    elif suffix == ".npz":
        predictions = np.load(out)["predictions"]
    else:
        predictions = np.loadtxt(out, delimiter=",", skiprows=1)
    assert predictions.shape == (3, 3) and predictions.argmax(axis=1).tolist() == [0, 1, 2]


def test_predict_rejects_unknown_format(runner, write_config, runs_dir, tmp_path) -> None:
    assert train(runner, write_config({"train": {"epochs": 1}}), runs_dir).exit_code == 0
    result = runner.invoke(
        app, ["predict", str(only_run(runs_dir)), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.txt")]
    )
    assert result.exit_code == 2 and "unsupported file type" in result.output


def test_validate_reports_every_file(runner, write_config, tmp_path) -> None:
    good = write_config()
    bad = write_config({"train": {"epochz": 1}}, name="bad.yaml")
    worse = write_config({"compile": {"los": "mse"}}, name="worse.yaml")
    checked = runner.invoke(app, ["validate", str(good)])
    assert checked.exit_code == 0 and checked.stdout == f"ok: {good}\n", checked.output
    assert "`validate --build` also builds the model" in checked.stderr  # "ok" is the schema's: Keras judges the arguments
    result = runner.invoke(app, ["validate", str(good), str(bad), str(worse)])
    assert result.exit_code == 2
    assert "2 problems found" in result.output  # epochz, los
    assert f"{bad}:" in result.output and f"{worse}:" in result.output and "did you mean `epochs`" in result.output
    built = runner.invoke(app, ["validate", "--build", str(good)])
    assert built.exit_code == 0 and "Total params" in built.output and "also builds the model" not in built.output


def test_validate_build_finds_unknown_names(runner, write_config) -> None:
    result = runner.invoke(
        app, ["validate", "--build", str(write_config({"model": {"layers": [{"Dense": {"units": 3, "activation": "sofmax"}}]}}))]
    )
    assert result.exit_code == 2 and "unknown activation `sofmax`" in result.output and "softmax" in result.output


def test_show_and_schema(runner, write_config) -> None:
    result = runner.invoke(app, ["show", str(write_config()), "--set", "seed=3"])
    assert result.exit_code == 0 and "seed: 3" in result.output and "steps_per_execution: 32" in result.output
    schema = json.loads(runner.invoke(app, ["schema"]).output)
    assert {"name", "data", "model", "compile", "train"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"model": {"layers": [{"Dense": {"units": 3, "activation": "softmax"}}], "inputs": {"x": [5]}}},
            "the data's samples have shape (2,) but the model expects (5,)",
        ),
        ({"model": {"layers": [{"Dnse": {"units": 3}}]}}, "did you mean `Dense`"),
        ({"train": {"class_weight": {4: 2.0}}}, "4 is not a label in the training data"),
        ({"train": {"callbacks": [{"EarlyStoping": {}}]}}, "did you mean `EarlyStopping`"),
        ({"compile": {"loss": "sparse_categorical_crossentropyy"}}, "unknown loss"),
        (
            {
                "data": {
                    "source": "python",
                    "function": "nowhere_mod:fn",
                    "generator": None,
                    "means": None,
                    "cov": None,
                    "samples_per_class": None,
                    "test_fraction": None,
                }
            },
            "cannot import module `nowhere_mod`",
        ),
        ({"runtime": {"device": "gpu"}}, "no GPU is visible; visible devices:"),
    ],
)
def test_bad_input_exits_2_without_a_run_folder(runner, write_config, runs_dir, changes, message) -> None:
    if changes.get("runtime") == {"device": "gpu"}:
        skip_if_a_gpu_is_visible()
    result = train(runner, write_config(changes), runs_dir)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(runs_dir.iterdir()) == []


def test_missing_config_file(runner, tmp_path, runs_dir) -> None:
    result = train(runner, tmp_path / "nope.yaml", runs_dir)
    assert result.exit_code == 2 and "no such file" in result.output


def test_divergence_exits_3_and_keeps_finite_history(runner, write_config, runs_dir) -> None:
    changes = {"compile": {"optimizer": {"SGD": {"learning_rate": 1e30}}, "steps_per_execution": 1}, "train": {"epochs": 4}}
    result = train(runner, write_config(changes), runs_dir)
    assert result.exit_code == 3, result.output
    run = only_run(runs_dir)
    info = read_json(run / "run.json")
    assert info["status"] == "diverged" and info["diverged_at"]["epoch"] >= 1
    history = read_json(run / "history.json") if (run / "history.json").exists() else {"loss": []}
    assert all(v is not None and np.isfinite(v) for v in history["loss"])
    assert not (run / "model.keras").exists()


def test_failure_midway_marks_the_run_failed(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"callbacks": [{"helpers_custom:FailAtEpoch": {"epoch": 1}}]}}), runs_dir)
    assert result.exit_code == 1 and "boom at epoch 1" in result.output
    run = only_run(runs_dir)
    info = read_json(run / "run.json")
    assert info["status"] == "failed" and "boom at epoch 1" in info["error"] and info["epochs_completed"] == 1
    assert read_json(run / "history.json")["epoch"] == [1]


def test_interrupt_marks_the_run_and_exits_130(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"callbacks": [{"helpers_custom:InterruptAtEpoch": {"epoch": 2}}]}}), runs_dir)
    assert result.exit_code == 130
    info = read_json(only_run(runs_dir) / "run.json")
    assert info["status"] == "interrupted" and info["epochs_completed"] == 2


def test_callbacks_from_yaml_write_into_the_run_folder(runner, write_config, runs_dir) -> None:
    callbacks = [
        {"CSVLogger": {"filename": "log.csv"}},
        {"ModelCheckpoint": {"filepath": "best.keras", "monitor": "val_loss", "save_best_only": True}},
        {"EarlyStopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}},
    ]
    result = train(runner, write_config({"train": {"epochs": 5, "callbacks": callbacks}}), runs_dir)
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    assert (run / "log.csv").is_file() and (run / "best.keras").is_file()
    assert read_json(run / "history.json")["epoch"] == [1, 2]  # no improvement of 10 after epoch 1: stop


def test_json_progress(runner, write_config, runs_dir) -> None:
    result = runner.invoke(app, ["train", str(write_config()), "--runs-dir", str(runs_dir), "--progress", "json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    epochs, final = records[:-1], records[-1]
    run = only_run(runs_dir)
    history = read_json(run / "history.json")
    assert [r["epoch"] for r in epochs] == history["epoch"] == [1, 2, 3]
    for key in ("loss", "val_loss", "sparse_categorical_accuracy", "val_sparse_categorical_accuracy"):
        assert [r[key] for r in epochs] == history[key], key  # the same numbers as the run folder, per epoch
    assert all(r["seconds"] >= 0 for r in epochs)
    assert final == read_json(run / "metrics.json")  # the last line: the test metrics


def test_smoke_uses_a_temp_folder_and_removes_it(runner, write_config, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(write_config({"train": {"epochs": 50}})), "--smoke", "--progress", "plain"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and not (tmp_path / "runs").exists()
    run = Path(next(line.split()[2] for line in result.output.splitlines() if line.startswith("run folder: ")))
    assert "(temporary folder removed)" in result.output and not run.parent.exists()


@pytest.mark.parametrize(("steps_per_epoch", "per_call"), [(50, 25), (5, 5)])
def test_steps_per_epoch_trains_exactly_that_many_steps_across_passes(runner, write_config, runs_dir, steps_per_epoch, per_call) -> None:
    # 180 training samples in batches of 16 are 12 batches a pass: both counts cross pass boundaries,
    # and 50 is no multiple of the default 32 steps per call (Keras alone would train 64 per epoch).
    config = write_config({"train": {"epochs": 2, "steps_per_epoch": steps_per_epoch, "validation_steps": 1000}})
    result = train(runner, config, runs_dir)
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    assert read_json(run / "history.json")["epoch"] == [1, 2]
    latest = checkpoints.latest(run)
    assert latest is not None
    state = checkpoints.read(latest)
    assert state.meta["optimizer"][0].endswith("iteration") and int(state.arrays["optimizer/00000"]) == 2 * steps_per_epoch
    assert effective_steps_per_execution(load_config(run / "config.yaml")) == per_call


def test_plot_model(runner, tmp_path) -> None:
    import shutil

    out = tmp_path / "model.png"
    result = runner.invoke(app, ["plot-model", str(REPO / "configs" / "multi_io.yaml"), "-o", str(out)])
    try:
        import pydot  # noqa: F401

        drawable = shutil.which("dot") is not None
    except ImportError:
        drawable = False
    if drawable:
        assert result.exit_code == 0 and out.is_file() and out.stat().st_size > 1000
    else:
        assert result.exit_code == 1 and "pip install pydot" in result.output and "Total params" in result.output


def unusable_runs_dir(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A runs dir no run folder can be made in, and what the error says about it."""
    (tmp_path / "a_file").write_text("not a folder")
    if kind.startswith("loop"):
        (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
        (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    return {
        "file": (str(tmp_path / "a_file"), "a_file is a file"),
        "devnull": ("/dev/null", "/dev/null is not a folder (a device, FIFO or socket)"),
        "below-a-file": (str(tmp_path / "a_file" / "runs"), "a_file is a file, so no folder can be made below it"),
        "loop": (str(tmp_path / "loop_a"), "Symlink loop"),
        "loop-below": (str(tmp_path / "loop_a" / "runs"), "Symlink loop"),
        "proc": ("/proc/self", "no folder can be made in /proc/"),
    }[kind]


@pytest.mark.parametrize("kind", ["file", "devnull", "below-a-file", "loop", "loop-below", "proc"])
@pytest.mark.parametrize("how", ["--runs-dir", "output.runs_dir", "--set"])
def test_an_unusable_runs_dir_is_exit_2_naming_the_key_before_anything_trains(
    runner, write_config, tmp_path: Path, kind: str, how: str
) -> None:
    if kind == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    path, says = unusable_runs_dir(tmp_path, kind)
    config = write_config({"output": {"runs_dir": path}} if how == "output.runs_dir" else {})
    args = ["train", str(config), "--progress", "none"]
    args += ["--runs-dir", path] if how == "--runs-dir" else ["--set", f"output.runs_dir={path}"] if how == "--set" else []
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    where = {"--runs-dir": "--runs-dir: ", "output.runs_dir": "config.yaml:", "--set": "--set: output.runs_dir: "}[how]
    assert where in result.output and says in result.output and "Traceback" not in result.output, result.output
    assert "run folder:" not in result.output and not list(tmp_path.glob("**/run.json"))


BAD_CALLBACK_ARGUMENTS = [
    ({"EarlyStopping": {"mode": "mxa"}}, "train.callbacks[0].EarlyStopping.mode: mode must be one of auto, min, max (got 'mxa')"),
    ({"ReduceLROnPlateau": {"mode": "maxx"}}, "train.callbacks[1].ReduceLROnPlateau.mode: mode must be one of auto, min, max"),
    ({"ModelCheckpoint": {"filepath": "/dev/null/ckpt.keras"}}, "train.callbacks[2].ModelCheckpoint.filepath: /dev/null/ckpt.keras cannot"),
    ({"LearningRateScheduler": {"schedule": 0.1}}, "train.callbacks[3].LearningRateScheduler.schedule: schedule must be a function"),
    ({"CSVLogger": {"filename": "log.csv", "separator": ""}}, "train.callbacks[4].CSVLogger.separator: separator must be one character"),
]


def test_callback_arguments_keras_reads_late_are_exit_2_all_at_once(runner, write_config, runs_dir) -> None:
    # Each was accepted by `validate --build` and failed (or was silently replaced by `auto`) once training ran.
    config = write_config({"train": {"callbacks": [spec for spec, _ in BAD_CALLBACK_ARGUMENTS]}})
    for args in (["validate", "--build", str(config)], ["train", str(config), "--runs-dir", str(runs_dir), "--progress", "none"]):
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 2 and "5 problems found" in result.output, result.output
        for _, message in BAD_CALLBACK_ARGUMENTS:
            assert message in result.output, (message, result.output)
        assert "did you mean `max`?" in result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())  # no run folder


def test_a_default_monitor_without_validation_data_is_exit_2(runner, write_config, runs_dir) -> None:
    # Keras only warns ("Early stopping conditioned on metric `val_loss` which is not available") and never stops.
    no_validation = {"validation_split": None, "stratify": None}
    callbacks = [{"EarlyStopping": {"patience": 1}}, {"ReduceLROnPlateau": {}}, {"ModelCheckpoint": {"filepath": "last.keras"}}]
    config = write_config({"train": {**no_validation, "callbacks": callbacks}})
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs_dir), "--progress", "none"], catch_exceptions=False)
    assert result.exit_code == 2 and "2 problems found" in result.output, result.output
    for index, name in enumerate(["EarlyStopping", "ReduceLROnPlateau"]):
        assert (
            f"train.callbacks[{index}].{name}: watches `val_loss` (its default monitor), but there is no validation data: it would never act"
        ) in result.output
    assert "set monitor: loss, or give validation data (train.validation_split)" in result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())  # no run folder
    # A ModelCheckpoint that saves every epoch reads no metric: its default monitor is no problem.
    config = write_config({"train": {**no_validation, "epochs": 1, "callbacks": callbacks[2:]}})
    result = train(runner, config, runs_dir)
    assert result.exit_code == 0 and (only_run(runs_dir) / "last.keras").is_file(), result.output


def test_a_callback_file_in_a_subfolder_of_the_run_folder_is_written(runner, write_config, runs_dir) -> None:
    config = write_config({"train": {"epochs": 2, "callbacks": [{"CSVLogger": {"filename": "logs/sub/train.csv"}}]}})
    result = train(runner, config, runs_dir)
    assert result.exit_code == 0, result.output
    assert (only_run(runs_dir) / "logs" / "sub" / "train.csv").read_text().count("\n") == 3  # the header and two epochs


def test_a_bad_value_from_a_train_option_is_reported_at_the_option(runner, write_config, runs_dir) -> None:
    # --device and --name set config keys: their problems name the option typed, not --set.
    config = str(write_config())
    device = runner.invoke(app, ["train", config, "--runs-dir", str(runs_dir), "--device", "cpu:0"])
    assert device.exit_code == 2 and "--device: runtime.device: expected auto, cpu, gpu or gpu:N" in device.output, device.output
    set_ = runner.invoke(app, ["train", config, "--runs-dir", str(runs_dir), "--set", "runtime.device=cpu:0"])
    assert set_.exit_code == 2 and "--set: runtime.device: expected auto" in set_.output, set_.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())
