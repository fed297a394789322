"""Callback state in checkpoints: every value Keras's callbacks (and a user's) keep, captured, restored as the same type.

The matrix: every built-in Keras callback that keeps state × models with 0-d, integer and
non-trainable variables × both loops, each interrupted after epoch 1 (Ctrl-C in-process) and resumed:
history.json and metrics.json byte-identical to the uninterrupted run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import only_run, train
from typer.testing import CliRunner

from kerasrun._tf import keras, tf
from kerasrun.cli import app
from kerasrun.rundir import checkpoints
from kerasrun.rundir.checkpoints import TrainingState
from kerasrun.train.checkpoint import CallbackStates, Uncapturable, decode, encode

# --------------------------------------------------------------------------- values, without training

VALUES: dict[str, Any] = {
    "none": None,
    "bool": True,
    "int": 2**70,
    "inf": math.inf,
    "str": "val_loss",
    "0-d int64 array": np.array(5, dtype=np.int64),  # Normalization's count, in EarlyStopping's best_weights
    "0-d float array": np.array(0.25, dtype=np.float32),
    "3-d array": np.arange(24, dtype=np.float16).reshape(2, 3, 4),
    "empty array": np.zeros((0, 3), dtype=np.int32),
    "unicode array": np.array(["a", "bc"]),
    "float32 scalar": np.float32(0.1),
    "int64 scalar": np.int64(-3),
    "bool scalar": np.bool_(True),
    "best_weights": [np.ones((2, 3), np.float32), np.array(7, np.int64), np.int64(9), np.zeros(3, np.float32)],
    "nested": {"arrays": [np.ones(2), 1.5, None], (0, "key"): (1, np.float64(2.5)), 3: {"deeper": [np.array(True)]}},
    "tuple": (1, [2, (3,)]),
    "tensor": tf.constant([0.5, 0.25]),
    "variable": keras.Variable(np.float32(0.01), trainable=False),
}


def same(a: Any, b: Any) -> bool:
    """Equal in value and in type, all the way down (arrays by dtype, shape and bytes)."""
    if isinstance(a, (keras.Variable, tf.Variable)):
        return isinstance(b, keras.Variable) and same(np.asarray(a.numpy()), np.asarray(b.numpy())) and a.trainable == b.trainable
    if tf.is_tensor(a):
        return tf.is_tensor(b) and a.dtype == b.dtype and same(a.numpy(), b.numpy())
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("name", VALUES)
def test_a_value_comes_back_from_the_checkpoint_file_as_the_same_type(tmp_path, name) -> None:
    arrays: dict[str, np.ndarray] = {}
    node = encode(VALUES[name], "callbacks/0/0", arrays)
    state = TrainingState(1, {"epoch": [0]}, arrays, {"format": checkpoints.FORMAT, "epoch": 1, "node": node})
    read = checkpoints.read(checkpoints.write(tmp_path, state, keep=1))  # through JSON and the .npz, never a pickle
    assert same(VALUES[name], decode(read.meta["node"], read.arrays))


def test_nan_comes_back() -> None:
    assert math.isnan(decode(json.loads(json.dumps(encode(math.nan, "k", {}))), {}))


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (object(), "an object"),
        (np.array([object()]), "a NumPy ndarray of Python objects"),
        ({"ok": 1, "bad": [1, lambda: 0]}, "a function"),
        (np.random.default_rng(0), "a numpy.random._generator.Generator"),
        (tf.constant(["text"]), "a tensor of strings"),
    ],
)
def test_what_a_checkpoint_cannot_hold_is_refused_by_name(value, named) -> None:
    with pytest.raises(Uncapturable) as refused:
        encode(value, "k", {})
    assert str(refused.value) == named


class Counter(keras.callbacks.Callback):
    """A user's callback: a setting, a counter, and state it makes only while training."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.count = 0
        self.schedule = abs  # code: a setting

    def on_epoch_end(self, epoch, logs=None):
        self.count += 1
        self.later = np.float32(epoch)


def test_a_user_callback_keeps_what_training_changed_not_what_it_was_built_with(tmp_path) -> None:
    callback = Counter(str(tmp_path / "old-folder" / "x.txt"))
    states = CallbackStates([callback])
    assert states.notes() == []
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    arrays: dict[str, np.ndarray] = {}
    entries = states.capture(arrays)
    assert entries[0]["uncaptured"] == []
    fresh = Counter(str(tmp_path / "moved-folder" / "x.txt"))  # the folder moved: the path is the new one's
    CallbackStates([fresh]).restore(TrainingState(2, {}, arrays, {"callbacks": entries}))
    assert (fresh.count, fresh.later, type(fresh.later)) == (2, 1.0, np.float32)
    assert fresh.path.endswith("moved-folder/x.txt") and fresh.schedule is abs


def test_keras_callbacks_restore_only_their_state_never_their_settings(tmp_path) -> None:
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0.5)
    stopper.on_train_begin()
    stopper.best, stopper.wait, stopper.min_delta = np.float64(0.3), 2, -0.5  # Keras flips min_delta on the first epoch
    arrays: dict[str, np.ndarray] = {}
    entries = CallbackStates([stopper]).capture(arrays)
    entries[0]["state"]["dict"].append(["filepath", "/elsewhere"])  # a tampered checkpoint sets no setting
    fresh = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0.5)
    CallbackStates([fresh]).restore(TrainingState(1, {}, arrays, {"callbacks": entries}))
    assert (fresh.best, type(fresh.best), fresh.wait, fresh.min_delta) == (0.3, np.float64, 2, 0.5)
    assert not hasattr(fresh, "filepath")


def test_a_format_1_checkpoint_still_restores() -> None:
    arrays = {"callbacks/0/best_weights/00000": np.ones(2), "callbacks/0/best_weights/00001": np.zeros(3)}
    entry = {
        "class": "EarlyStopping",
        "values": {"wait": 1, "best": 0.5, "stopped_epoch": 0, "best_epoch": 0},
        "arrays": {"best_weights": 2},
    }
    fresh = keras.callbacks.EarlyStopping(restore_best_weights=True)
    CallbackStates([fresh]).restore(TrainingState(1, {}, arrays, {"format": 1, "callbacks": [entry]}))
    assert fresh.wait == 1 and [w.shape for w in fresh.best_weights] == [(2,), (3,)]


# --------------------------------------------------------------------------- interrupted after epoch 1, resumed

LAYERS: dict[str, list[Any]] = {
    # Normalization's `count` is a 0-d int64 variable (the "Basic regression" recipe's crash).
    "normalization": [{"Normalization": {"axis": -1}}, {"Dense": {"units": 8, "activation": "relu"}}],
    # Integers between layers: adapted bin boundaries, an adapted vocabulary (lookup tables, not variables).
    "lookup": [{"Discretization": {"num_bins": 4}}, "IntegerLookup", {"Embedding": {"input_dim": 8, "output_dim": 4}}, "Flatten"],
    # Non-trainable moving statistics, updated by every training step.
    "batchnorm": [{"Dense": {"units": 8, "activation": "relu"}}, "BatchNormalization"],
}
LAYERS["mixed"] = [*LAYERS["normalization"], "BatchNormalization"]
# A string input and an adapted vocabulary: a lookup table of strings, rebuilt by adapting on resume, not a checkpointed variable.
LAYERS["string_lookup"] = ["StringLookup", {"Embedding": {"input_dim": 8, "output_dim": 4}}, "Flatten"]
SOFTMAX = {"Dense": {"units": 3, "activation": "softmax"}}
# What a model needs besides TINY: two words per sample for the string input.
NOT_SYNTHETIC = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}
MODEL_CHANGES: dict[str, dict[str, Any]] = {
    "string_lookup": {
        "data": {"source": "python", "function": "helpers_custom:word_pairs", **NOT_SYNTHETIC},
        "model": {"inputs": {"x": {"shape": [2], "dtype": "string"}}},
    }
}

# Every built-in Keras callback that keeps state, set so that within 3 epochs its state matters.
CALLBACKS: dict[str, Any] = {
    # min_delta 100: no epoch after the first improves, so it stops after epoch 2 on the wait it kept.
    "early_stopping": {"EarlyStopping": {"monitor": "val_loss", "patience": 1, "min_delta": 100.0}},
    "early_stopping_best_weights": {"EarlyStopping": {"monitor": "val_loss", "patience": 2, "restore_best_weights": True}},
    "reduce_lr": {"ReduceLROnPlateau": {"monitor": "loss", "patience": 1, "min_delta": 100.0, "factor": 0.5, "cooldown": 1}},
    "model_checkpoint_best": {"ModelCheckpoint": {"filepath": "best.keras", "monitor": "val_loss", "save_best_only": True}},
    "lr_scheduler": {"LearningRateScheduler": {"schedule": "helpers_custom:halve_every_epoch"}},
    "terminate_on_nan": "TerminateOnNaN",
    "csv_logger": {"CSVLogger": {"filename": "log.csv"}},
    "user_plain_state": "helpers_callbacks:PlainState",
}


def resumed_equals_uninterrupted(
    runner: CliRunner,
    write_config: Callable[..., Path],
    tmp_path: Path,
    layers: list[Any],
    callbacks: list[Any],
    loop: str,
    changes: dict[str, Any] | None = None,
) -> None:
    """Train uninterrupted; train again, Ctrl-C after epoch 1, resume; the same history.json, metrics.json (and CSV log)."""
    marker = tmp_path / f"interrupted-{loop}"
    interrupt = {"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 1}}
    changes = changes or {}
    sections = {
        "model": {**changes.get("model", {}), "layers": [*layers, SOFTMAX]},
        "train": {**changes.get("train", {}), "loop": loop, "callbacks": [*callbacks, interrupt]},
    }
    config = write_config({**changes, **sections}, name=f"{loop}.yaml")
    marker.touch()
    result = train(runner, config, tmp_path / f"reference-{loop}")
    assert result.exit_code == 0, result.output
    marker.unlink()
    result = train(runner, config, tmp_path / f"runs-{loop}")
    assert result.exit_code == 130, result.output
    run = only_run(tmp_path / f"runs-{loop}")
    assert [p.name for p in checkpoints.list_checkpoints(run)] == ["epoch-0001.npz"]
    resumed = runner.invoke(app, ["resume", str(run), "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    assert "warning" not in resumed.output
    reference = only_run(tmp_path / f"reference-{loop}")
    for name in ("history.json", "metrics.json", "log.csv"):
        if name != "log.csv" or (reference / name).exists():
            assert (run / name).read_bytes() == (reference / name).read_bytes(), f"{loop}: {name}"


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_all_stateful_callbacks_on_a_model_with_0d_and_non_trainable_variables(runner, write_config, tmp_path, loop) -> None:
    callbacks = [spec for name, spec in CALLBACKS.items() if name != "early_stopping"]  # it would end training at epoch 2
    resumed_equals_uninterrupted(runner, write_config, tmp_path, LAYERS["mixed"], callbacks, loop)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_all_stateful_callbacks_on_a_model_with_an_adapted_string_lookup(runner, write_config, tmp_path, loop) -> None:
    callbacks = [spec for name, spec in CALLBACKS.items() if name != "early_stopping"]  # it would end training at epoch 2
    layers = LAYERS["string_lookup"]
    resumed_equals_uninterrupted(runner, write_config, tmp_path, layers, callbacks, loop, MODEL_CHANGES["string_lookup"])


def test_early_stopping_restoring_best_weights_with_a_0d_weight(runner, write_config, tmp_path) -> None:
    """The "Basic regression" recipe's crash: `Object of type ndarray is not JSON serializable` at the first checkpoint."""
    layers = LAYERS["normalization"]
    resumed_equals_uninterrupted(runner, write_config, tmp_path, layers, [CALLBACKS["early_stopping_best_weights"]], "fit")
    state = checkpoints.read(checkpoints.latest(only_run(tmp_path / "runs-fit")) or Path())
    best_weights = next(
        value for name, value in decode(state.meta["callbacks"][0]["state"], state.arrays).items() if name == "best_weights"
    )
    assert [np.ndim(w) for w in best_weights] == [1, 1, 0, 2, 1, 2, 1]  # mean, variance, count, then the Dense layers
    assert isinstance(best_weights[2], np.int64)


MODELS = ["normalization", "lookup", "batchnorm", "string_lookup"]
# Each pair trains with one loop, alternating like a checkerboard: every callback meets both loops (on two models each),
# every model meets both loops (with four callbacks each), and the tests above run all the callbacks together on both.
PAIRS = [(callback, model, ("fit", "custom")[(i + j) % 2]) for i, callback in enumerate(CALLBACKS) for j, model in enumerate(MODELS)]


@pytest.mark.slow
@pytest.mark.parametrize(("callback", "model", "loop"), PAIRS, ids=[f"{c}-{m}-{loop}" for c, m, loop in PAIRS])
def test_each_stateful_callback_on_each_model(runner, write_config, tmp_path, callback, model, loop) -> None:
    resumed_equals_uninterrupted(runner, write_config, tmp_path, LAYERS[model], [CALLBACKS[callback]], loop, MODEL_CHANGES.get(model))


@pytest.mark.slow
def test_a_callback_reading_the_rate_of_a_schedule(runner, write_config, tmp_path) -> None:
    schedule = {"ExponentialDecay": {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}}
    compile_ = {"optimizer": {"Adam": {"learning_rate": schedule}}}
    for loop in ("fit", "custom"):
        layers = LAYERS["normalization"]
        resumed_equals_uninterrupted(runner, write_config, tmp_path, layers, [CALLBACKS["user_plain_state"]], loop, {"compile": compile_})


# --------------------------------------------------------------------------- state a checkpoint cannot hold


def test_state_that_cannot_be_held_is_named_at_the_start_and_on_resume(runner, write_config, tmp_path) -> None:
    marker = tmp_path / "interrupted"
    callbacks = ["helpers_callbacks:KeepsAGenerator", {"helpers_custom:InterruptOnce": {"marker": str(marker), "epoch": 1}}]
    config = write_config({"train": {"callbacks": callbacks}})
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 130, result.output
    starts = [line for line in result.output.splitlines() if line.startswith("warning: callback KeepsAGenerator")]
    assert starts == [
        "warning: callback KeepsAGenerator keeps rng (a random.Random), which a checkpoint cannot hold: a resumed run starts it "
        "afresh (give the callback get_state() and set_state(dict) returning and taking numbers, strings, arrays and lists or "
        "dicts of them)"
    ]
    run = only_run(tmp_path / "runs")
    resumed = runner.invoke(app, ["resume", str(run), "--progress", "plain"])
    assert resumed.exit_code == 0, resumed.output
    assert (
        "warning: the checkpoint does not hold callback KeepsAGenerator's rng (a random.Random), handle (an object): it starts afresh"
        in resumed.output
    )
    assert resumed.output.index("warning: the checkpoint") < resumed.output.index("epoch 2/3")  # said before training goes on
