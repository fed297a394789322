"""What a sweep refuses before training: an edited config on resume or join, a metric no trial logs or whose direction is unknown, degenerate spaces."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import write_tiny
from typer.testing import CliRunner, Result

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

LR = "compile.optimizer.Adam.learning_rate"
UNITS = "model.layers[0].Dense.units"


def sweep(*args: str) -> Result:
    """`kerasrun sweep ARGS` in-process."""
    return CliRunner().invoke(app, ["sweep", *args])


def test_resume_and_join_refuse_a_config_edited_since_the_sweep_started(tmp_path: Path) -> None:
    marker = tmp_path / "interrupted"
    changes = {"train": {"epochs": 2, "callbacks": [{"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 1}}]}}
    config = write_tiny(tmp_path, changes)
    original = config.read_text()
    runs = tmp_path / "runs"
    command = [str(config), "--grid", f"{LR}=0.01,0.1", "--study-name", "edit", "--runs-dir", str(runs)]
    stopped = sweep(*command)  # Ctrl-C at the start of trial-000's second epoch, after its first checkpoint
    assert stopped.exit_code == 130, stopped.output
    folder = runs / "edit"
    before = read_json(folder / "sweep.json")
    assert [t["status"] for t in sorted(before["trials"], key=lambda t: t["index"])] == ["interrupted", "pending"]
    data = yaml.safe_load(original)
    data["model"]["layers"][0]["Dense"]["units"] = 4
    data["train"]["batch_size"] = 8
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    for refused in (sweep("--resume", str(folder)), sweep(*command)):  # resuming it, and the same command joining it again
        assert refused.exit_code == 2, refused.output
        assert f"changed since the sweep 'edit' started: {UNITS} and train.batch_size differ" in refused.output
        assert "restore the file as it was when the sweep started" in refused.output
    assert not (folder / "trial-001").exists() and read_json(folder / "sweep.json") == before  # nothing trained or rewritten
    config.write_text(original)
    resumed = sweep("--resume", str(folder))
    assert resumed.exit_code == 0, resumed.output
    done = read_json(folder / "sweep.json")
    assert sorted(t["status"] for t in done["trials"]) == ["completed", "completed"]
    for trial in ("trial-000", "trial-001"):  # the resumed trial kept its own config, the new one got the restored file's
        assert yaml.safe_load((folder / trial / "config.yaml").read_text())["model"]["layers"][0]["Dense"]["units"] == 8


def test_an_accuracy_metric_ranks_high_values_first_without_mode(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 1}})
    runs = tmp_path / "runs"
    metric = "val_sparse_categorical_accuracy"
    result = sweep(str(config), "--grid", f"{LR}=0.0001,0.05", "--metric", metric, "--runs-dir", str(runs), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["mode"] == "max" and f"{metric} max (auto)" in result.stderr
    ranked = sorted(record["trials"], key=lambda t: t["rank"])
    assert ranked[0]["metric"] > ranked[1]["metric"] and record["best"]["metric"] == ranked[0]["metric"]
    forced = sweep(str(config), "--grid", f"{LR}=0.0001,0.05", "--metric", metric, "--mode", "min", "--runs-dir", str(runs), "--json")
    assert forced.exit_code == 0, forced.output
    record = json.loads(forced.stdout)
    assert record["mode"] == "min" and record["trials"][0]["metric"] < record["trials"][1]["metric"]  # --mode still overrides


def test_a_metric_no_trial_logs_or_of_unknown_direction_is_refused_before_training(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 1}})
    runs = tmp_path / "runs"
    space = ["--optuna", "3", "--space", f"{LR}=loguniform(1.0e-4,1.0e-1)"]
    typo = sweep(str(config), *space, "--metric", "val_acc", "--runs-dir", str(runs))
    assert typo.exit_code == 2 and "--metric: the trials log no metric `val_acc`" in typo.output, typo.output
    assert "did you mean `val_sparse_categorical_accuracy`?" in typo.output and not runs.exists()
    (tmp_path / "custom").mkdir()
    one_hot = {
        "data": {"preprocess": [{"one_hot": 3}]},
        "compile": {"loss": "categorical_crossentropy", "metrics": ["helpers_custom:half_mse"]},
    }
    custom = write_tiny(tmp_path / "custom", one_hot)  # a plain function (on one-hot rows, as it needs): no direction
    unknown = sweep(str(custom), *space, "--metric", "val_half_mse", "--runs-dir", str(runs))
    assert unknown.exit_code == 2 and "can't tell whether `val_half_mse` is better low or high" in unknown.output, unknown.output
    assert "give --mode max or --mode min" in unknown.output and not runs.exists()
    # No trial can be prepared: the trials' own error is what to fix, not the direction.
    broken = sweep(str(config), *space, "--metric", "val_sparse_categorical_accuracy", "--set", "train.class_weight={cat: 2.0}")
    assert broken.exit_code == 2 and "class names as class_weight keys need a source that names its classes" in broken.output, broken.output
    assert "can't tell whether" not in broken.output and not runs.exists()


def test_a_sweep_that_ranks_no_trial_exits_1(tmp_path: Path) -> None:
    # A custom train.step logs what it returns: its names are known only as it trains, so the metric is not checked before.
    config = write_tiny(tmp_path, {"train": {"epochs": 1, "loop": "custom", "step": "helpers_custom:step_with_tensor_branch"}})
    result = sweep(
        str(config), "--grid", f"{LR}=0.01,0.1", "--metric", "val_nothing", "--mode", "min", "--runs-dir", str(tmp_path / "runs")
    )
    assert result.exit_code == 1, result.output
    assert "no trial completed with a value of val_nothing" in result.output and "no completed trial logged `val_nothing`" in result.output


def test_degenerate_spaces_are_refused_at_their_option(tmp_path: Path) -> None:
    config = write_tiny(tmp_path)
    runs = tmp_path / "runs"
    twice = sweep(str(config), "--grid", "train.epochs=3,3", "--grid", f"{LR}=0.001,1.0e-3", "--runs-dir", str(runs))
    assert twice.exit_code == 2 and "2 problems found" in twice.output, twice.output
    assert "--grid: train.epochs: `3` is listed twice" in twice.output
    assert f"--grid: {LR}: `0.001` and `1.0e-3` are the same value" in twice.output
    space = ["--space", "train.batch_size=choice(32)", "--space", "train.epochs=int(16,16)", "--space", "seed=choice(1,2,1)"]
    single = sweep(str(config), "--random", "3", *space, "--runs-dir", str(runs))
    assert single.exit_code == 2 and "3 problems found" in single.output, single.output
    for key, value in (("train.batch_size", "32"), ("train.epochs", "16")):
        assert f"--space: {key}: " in single.output and f"use --set {key}={value} for a fixed value" in single.output
    assert "a single value is not a search" in single.output and "--space: seed: `1` is listed twice" in single.output
    reversed_range = sweep(str(config), "--random", "3", "--space", "train.epochs=int(16,8)")
    assert reversed_range.exit_code == 2 and "expected finite numbers with low < high" in reversed_range.output
    assert not runs.exists()


def test_searched_values_keras_refuses_are_exit_2_before_any_trial(tmp_path: Path) -> None:
    # Layer and optimizer arguments are Keras's to judge: each trial used to fail as it trained (a float `units`, an activation `bogus`).
    config = write_tiny(tmp_path, {"train": {"epochs": 1}})
    runs = tmp_path / "runs"
    drawn = sweep(str(config), "--optuna", "2", "--space", f"{UNITS}=uniform(4,8)", "--runs-dir", str(runs))
    assert drawn.exit_code == 2 and "1 problem found" in drawn.output, drawn.output
    assert "--space: model.layers[0]: Keras rejected the arguments of Dense" in drawn.output
    assert f"(trial values {UNITS}=4.0)" in drawn.output and "int(4,8) draws integers" in drawn.output
    listed = sweep(str(config), "--grid", "model.layers[0].Dense.activation=relu,bogus", "--runs-dir", str(runs))
    assert listed.exit_code == 2, listed.output
    assert "--grid: model.layers[0].Dense.activation: unknown activation `bogus`" in listed.output
    choice = sweep(str(config), "--random", "1", "--space", f"{LR}=choice(abc,0.01)", "--runs-dir", str(runs))  # a draw may miss it
    assert choice.exit_code == 2 and "learning_rate=abc" in choice.output, choice.output
    assert not runs.exists()


def test_a_metric_a_user_callback_logs_is_not_refused(tmp_path: Path) -> None:
    # history.json holds every key of the epoch logs: a user callback's own (`epochs_seen` here, a custom val_f1 in practice).
    callbacks = {"train": {"epochs": 2, "callbacks": ["helpers_custom:CountingCallback"]}}
    config = write_tiny(tmp_path, callbacks)
    result = sweep(
        str(config), "--grid", f"{LR}=0.01,0.1", "--metric", "epochs_seen", "--mode", "max", "--runs-dir", str(tmp_path / "runs")
    )
    assert result.exit_code == 0, result.output
    watched = {
        "train": {
            "epochs": 2,
            "callbacks": ["helpers_custom:CountingCallback", {"EarlyStopping": {"monitor": "epochs_seen", "mode": "max"}}],
        }
    }
    (tmp_path / "watch").mkdir()
    trained = CliRunner().invoke(app, ["train", str(write_tiny(tmp_path / "watch", watched)), "--runs-dir", str(tmp_path / "w")])
    assert trained.exit_code == 0, trained.output


def test_auto_mode_finds_a_per_output_metrics_direction() -> None:
    # Keras finds a metric by its own name (`accuracy`); a multi-output model logs it as `cls_accuracy`.
    import numpy as np

    from kerasrun._tf import keras
    from kerasrun.sweep.metric import metric_direction

    inputs = keras.Input((2,))
    outputs = [keras.layers.Dense(1, name="score")(inputs), keras.layers.Dense(3, activation="softmax", name="cls")(inputs)]
    model = keras.Model(inputs, outputs)
    model.compile(loss=["mse", "sparse_categorical_crossentropy"], metrics=[["mae"], ["accuracy"]])
    model.train_on_batch(np.zeros((4, 2)), [np.zeros((4, 1)), np.zeros(4)])  # builds the metrics, as the first batch does
    assert metric_direction(model, "val_cls_accuracy") == "max"
    assert metric_direction(model, "score_mae") == "min"


def test_what_a_resume_or_join_may_differ_in() -> None:
    from kerasrun.sweep.search import differing_keys

    recorded = {"name": "a", "data": {"path": "/tmp/a/d.npz"}, "model": {"layers": [{"Dense": {"units": 8}}]}, "output": {"runs_dir": "/x"}}
    elsewhere = {  # another machine's ${SLURM_TMPDIR}, run name and runs folder; a newer kerasrun's new key
        "name": "b",
        "data": {"path": "/scratch/b/d.npz", "new_key": 1},
        "model": {"layers": [{"Dense": {"units": 8}}]},
        "output": {"runs_dir": "/y"},
    }
    assert differing_keys(recorded, elsewhere) == []
    edited = {**elsewhere, "model": {"layers": [{"Dense": {"units": 16}}]}}
    assert differing_keys(recorded, edited) == ["model.layers[0].Dense.units"]


def test_a_searched_key_named_like_a_table_column_keeps_its_whole_name() -> None:
    from kerasrun.sweep.summary import short_names

    assert short_names([LR, "train.epochs"], taken=["epochs", "status"]) == ["learning_rate", "train.epochs"]
