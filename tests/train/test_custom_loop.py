"""`train.loop: custom`: identical numbers to `fit` (history and final weights), callbacks, and the user step hook."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import REPO, only_run, train

from kerasrun._tf import keras
from kerasrun.rundir.io import read_json
from kerasrun.train.trainers.custom import CustomTrainer

REGULARIZED: dict[str, Any] = {
    "model": {
        "layers": [
            {"Dense": {"units": 16, "activation": "relu", "kernel_regularizer": {"L2": {"l2": 0.01}}}},
            {"Dropout": {"rate": 0.3}},
            {"ActivityRegularization": {"l1": 0.001}},  # a layer that calls add_loss
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "compile": {"steps_per_execution": 4},
}
PY = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}

PARITY_CASES = {
    "dropout_l2_add_loss": REGULARIZED,
    "class_weight": {**REGULARIZED, "train": {"class_weight": {0: 3.0, 2: 0.5}}},
    "sample_weight_array_and_rule": {
        **REGULARIZED,
        "data": {"source": "python", "function": "helpers_custom:weighted_blobs", **PY},
        "train": {"sample_weight": {"by_class": {1: 2.0}}, "stratify": False},
    },
    # Keras's own fit fails on add_loss under float16, so this case keeps Dropout and L2 only.
    "mixed_float16": {
        "model": {"layers": [REGULARIZED["model"]["layers"][i] for i in (0, 1, 3)]},
        "runtime": {"precision": "mixed_float16"},
    },
    "steps_per_epoch_carries_over": {**REGULARIZED, "train": {"epochs": 4, "steps_per_epoch": 5, "validation_steps": 2}},
    # 12 shuffled batches an epoch in calls of 5, 5, 2: the custom loop reads them from one stream of passes for the
    # whole run, its last call of each epoch short; fit makes a fresh iterator every epoch that runs out.
    "one_stream_short_last_call": {**REGULARIZED, "compile": {"steps_per_execution": 5}, "train": {"epochs": 3, "shuffle": True}},
    "weighted_metrics_and_no_validation": {
        **REGULARIZED,
        "compile": {"weighted_metrics": ["sparse_categorical_accuracy"], "steps_per_execution": 1},
        "train": {"validation_split": None, "stratify": False, "class_weight": "balanced"},
    },
}


def count_feed_chunks(monkeypatch) -> list[int]:
    """A list that grows by the steps of every chunk an ArrayFeed hands a compiled call (the real chunk still runs)."""
    from kerasrun.data.feed import ArrayFeed

    steps: list[int] = []
    original = ArrayFeed.chunk

    def chunk(self: ArrayFeed, first: int, count: int) -> Any:
        """Note the chunk's steps, then cut it."""
        steps.append(count)
        return original(self, first, count)

    monkeypatch.setattr(ArrayFeed, "chunk", chunk)
    return steps


@pytest.mark.parametrize("case", PARITY_CASES)
def test_custom_loop_equals_fit_exactly(runner, write_config, tmp_path, monkeypatch, case) -> None:
    config = write_config(PARITY_CASES[case])
    histories, weights, chunks, steps = {}, {}, {}, count_feed_chunks(monkeypatch)
    for loop in ("fit", "custom"):
        steps.clear()
        result = train(runner, config, tmp_path / loop, "--set", f"train.loop={loop}")
        assert result.exit_code == 0, result.output
        chunks[loop] = steps.copy()
        folder = only_run(tmp_path / loop)
        histories[loop] = read_json(folder / "history.json")
        weights[loop] = keras.saving.load_model(folder / "model.keras", safe_mode=True).get_weights()
    assert histories["custom"] == histories["fit"]  # bit for bit
    # The custom loop gathered its in-memory batches inside its compiled calls (ArrayFeed), fit read tf.data.
    assert chunks["fit"] == [] and len(chunks["custom"]) > 0
    assert len(weights["fit"]) == len(weights["custom"])
    for fit_w, custom_w in zip(weights["fit"], weights["custom"], strict=True):
        assert np.array_equal(fit_w, custom_w)


def test_custom_loop_drives_keras_callbacks(runner, write_config, tmp_path) -> None:
    callbacks = [
        {"EarlyStopping": {"monitor": "val_loss", "patience": 0, "min_delta": 10.0}},
        {"CSVLogger": {"filename": "log.csv"}},
        {"ReduceLROnPlateau": {"monitor": "val_loss", "patience": 1}},
        {"ModelCheckpoint": {"filepath": "best.keras", "save_best_only": True}},
    ]
    config = write_config({"train": {"epochs": 6, "callbacks": callbacks}})
    histories = {}
    for loop in ("fit", "custom"):
        assert train(runner, config, tmp_path / loop, "--set", f"train.loop={loop}").exit_code == 0
        folder = only_run(tmp_path / loop)
        histories[loop] = read_json(folder / "history.json")
        assert (folder / "log.csv").is_file() and (folder / "best.keras").is_file()
    assert histories["custom"] == histories["fit"] and histories["custom"]["epoch"] == [1, 2]


def test_custom_loop_divergence_exits_3(runner, write_config, runs_dir) -> None:
    config = write_config(
        {"compile": {"optimizer": {"SGD": {"learning_rate": 1e30}}, "steps_per_execution": 1}, "train": {"loop": "custom", "epochs": 3}}
    )
    result = train(runner, config, runs_dir)
    assert result.exit_code == 3
    assert read_json(only_run(runs_dir) / "run.json")["status"] == "diverged"


def test_user_step_example_trains(runner, runs_dir) -> None:
    config = REPO / "configs" / "digits_denoising_custom_step.yaml"
    result = train(runner, config, runs_dir, "--set", "train.epochs=4")
    assert result.exit_code == 0, result.output
    history = read_json(only_run(runs_dir) / "history.json")
    assert set(history) == {"epoch", "loss", "clean_mse", "val_loss", "val_clean_mse"}
    assert history["loss"][-1] < history["loss"][0] and history["clean_mse"][-1] < history["clean_mse"][0]
    again = tmp = runs_dir.parent / "again"
    assert train(runner, config, tmp, "--set", "train.epochs=4").exit_code == 0
    assert read_json(only_run(again) / "history.json") == history  # seeded noise: reproducible


@pytest.mark.parametrize("step", ["step_with_tensor_branch", "branching_partial", "branching_method", "branching_object"])
def test_user_step_gets_autograph(runner, write_config, runs_dir, step) -> None:
    result = train(runner, write_config({"train": {"loop": "custom", "step": f"helpers_custom:{step}"}}), runs_dir)
    assert result.exit_code == 0, result.output
    history = read_json(only_run(runs_dir) / "history.json")
    assert all(value > 0 for value in history["positive_inputs"]) and history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize(
    "step, message",
    [
        ("helpers_custom:step_wrong_signature", "must accept (model, x, y, sample_weight, training)"),
        ("helpers_custom:step_returns_list", "must return a mapping of names to scalars, got list"),
        ("helpers_custom:step_returns_vector", "returned `loss` with shape (3,); expected a scalar"),
        ("helpers_custom:no_such_step", "has no attribute `no_such_step`"),
        ("no_such_module_abc:step", "cannot import module"),
    ],
)
def test_bad_user_step_exits_2_without_a_run_folder(runner, write_config, runs_dir, step, message) -> None:
    result = train(runner, write_config({"train": {"loop": "custom", "step": step}}), runs_dir)
    assert result.exit_code == 2, result.output
    assert "train.step" in result.output and message in result.output
    assert list(runs_dir.iterdir()) == []


def test_step_needs_the_custom_loop(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"loop": "fit", "step": "helpers_custom:step_returns_list"}}), runs_dir)
    assert result.exit_code == 2 and "`step` needs `loop: custom`" in result.output


def test_validation_from_first(write_config) -> None:
    from kerasrun.config.load import load_config
    from kerasrun.data import load_data

    changes: dict[str, Any] = {"data": {"test_fraction": None}, "train": {"validation_split": 0.25, "stratify": False}}
    last = load_data(load_config(write_config(changes)))
    first = load_data(load_config(write_config({**changes, "train": {**changes["train"], "validation_from": "first"}})))
    assert len(first.validation) == len(last.validation) == 75
    assert np.array_equal(first.validation.x, np.concatenate([first.validation.x[:0], last.train.x[:75]]))


def test_linear_classifier_seed_with_the_custom_loop(runner, tmp_path) -> None:
    config = REPO / "configs" / "linear_classifier.yaml"
    histories = {}
    for loop in ("fit", "custom"):
        assert train(runner, config, tmp_path / loop, "--set", f"train.loop={loop}").exit_code == 0
        histories[loop] = read_json(only_run(tmp_path / loop) / "history.json")
    assert histories["custom"] == histories["fit"]
    assert histories["custom"]["binary_accuracy"][-1] >= 0.97


def test_loop_auto_trains_with_the_custom_loop_and_gives_fits_bytes(runner, write_config, tmp_path) -> None:
    config = write_config(REGULARIZED)
    histories = {}
    for loop in ("auto", "fit"):
        result = train(runner, config, tmp_path / loop, "--set", f"train.loop={loop}")
        assert result.exit_code == 0, result.output
        run = only_run(tmp_path / loop)
        histories[loop] = (run / "history.json").read_bytes()
        info = read_json(run / "run.json")
        assert info["loop"] == ("custom" if loop == "auto" else "fit")
    assert histories["auto"] == histories["fit"]  # the faster loop, the same bytes
    assert info["loop_chosen"] is None and "note: train.loop" not in result.output
    auto = read_json(only_run(tmp_path / "auto") / "run.json")
    assert auto["loop_chosen"] == "auto: the custom loop gives fit's numbers, faster"


def test_loop_auto_falls_back_to_fit_for_a_model_with_its_own_train_step_and_custom_refuses_it(runner, write_config, tmp_path) -> None:
    config = write_config({"model": {"inputs": None, "layers": None, "factory": "helpers_custom:own_train_step"}})
    result = train(runner, config, tmp_path / "auto")
    assert result.exit_code == 0, result.output
    assert "note: train.loop: fit (auto: the model's class overrides train_step, which only fit runs)" in result.output
    info = read_json(only_run(tmp_path / "auto") / "run.json")
    assert info["loop"] == "fit" and "overrides train_step" in info["loop_chosen"]
    refused = train(runner, config, tmp_path / "custom", "--set", "train.loop=custom")
    assert refused.exit_code == 2 and "train.loop" in refused.output and "would silently skip it" in refused.output
    assert not (tmp_path / "custom").exists() or not any((tmp_path / "custom").iterdir())


def test_loop_auto_keeps_fit_when_the_model_compiles_with_xla(runner, write_config, tmp_path) -> None:
    result = train(runner, write_config({"compile": {"jit_compile": True}, "train": {"epochs": 1}}), tmp_path / "xla")
    assert result.exit_code == 0, result.output
    info = read_json(only_run(tmp_path / "xla") / "run.json")
    assert info["loop"] == "fit" and info["loop_chosen"] == "auto: the model compiles with XLA (jit_compile), which only fit does"


def test_a_compute_loss_override_without_training_gives_fits_bytes_in_the_custom_loop(runner, write_config, tmp_path) -> None:
    # Keras's fit calls an override from before Keras 3.3 without `training`; the custom loop must too.
    config = write_config({"model": {"inputs": None, "layers": None, "factory": "helpers_custom:loss_without_training"}})
    histories = {}
    for loop in ("fit", "custom"):
        result = train(runner, config, tmp_path / loop, "--set", f"train.loop={loop}")
        assert result.exit_code == 0, result.output
        histories[loop] = (only_run(tmp_path / loop) / "history.json").read_bytes()
    assert histories["custom"] == histories["fit"]


FEED_SHAPES = {  # (samples per class, steps_per_epoch, steps_per_execution): 3 classes, 20 % validation, batch 16
    "training_calls_cross_into_the_next_pass": (50, 6, 3),  # 8 batches a pass, calls of 3: [n] then [2n] rows of order
    "short_last_validation_call": (100, None, 3),  # 4 validation batches: calls of 3 and 1
    "short_last_training_call": (100, None, 4),  # 15 training batches a pass: calls of 4, 4, 4, 3
}


def fit_through_feeds(experiment: Any, batch: int, steps_per_epoch: int | None) -> CustomTrainer:
    """Train an experiment's custom loop as a run does, reading ArrayFeeds; return the trainer."""
    from kerasrun.build.model import build_training_state
    from kerasrun.data import make_dataset
    from kerasrun.data.epochs import EpochClock
    from kerasrun.data.feed import make_array_feed

    trainer, train_split, validation, seed = experiment.trainer, experiment.data.train, experiment.data.validation, experiment.config.seed
    assert isinstance(trainer, CustomTrainer)
    stream_steps = steps_per_epoch or trainer.one_stream_steps(train_split, batch)
    train_ds = make_dataset(train_split, batch, True, seed, None, EpochClock(), stream_steps)
    val_ds = make_dataset(validation, batch, False, seed)
    build_training_state(experiment.model, train_ds)  # as a run does: no variables are made while tracing
    trainer.read_in_graph(lambda: (make_array_feed(train_split, batch, True, seed), make_array_feed(validation, batch, False, seed)))
    trainer.fit(train_ds, val_ds, [], initial_epoch=0)
    return trainer


@pytest.mark.parametrize("case", FEED_SHAPES)
def test_feed_chunks_are_traced_once(write_config, case) -> None:
    """Whatever the order's length and the steps per call, each feed chunk traces the step once (input_signature)."""
    from kerasrun.config.load import load_config
    from kerasrun.train.experiment import prepare_experiment

    samples, steps_per_epoch, per_call = FEED_SHAPES[case]
    changes = {
        "data": {"samples_per_class": samples, "test_fraction": None},
        "compile": {"steps_per_execution": per_call},
        "train": {"loop": "custom", "epochs": 3, "batch_size": 16, "steps_per_epoch": steps_per_epoch, "validation_split": 0.2},
    }
    experiment = prepare_experiment(load_config(write_config(changes)))
    trainer = fit_through_feeds(experiment, 16, steps_per_epoch)
    assert trainer.loop.steps_per_execution == per_call
    traces = {training: chunk.experimental_get_tracing_count() for training, chunk in trainer.loop.feed_chunks.items()}
    assert traces == {True: 1, False: 1}


def test_a_user_step_is_checked_on_the_chunk_the_run_then_calls(write_config) -> None:
    """train.step is traced before any folder exists, on the feed's chunk: training reuses that trace instead of tracing again."""
    from kerasrun.config.load import load_config
    from kerasrun.train.experiment import prepare_experiment

    changes = {
        "data": {"test_fraction": None},
        "train": {"loop": "custom", "epochs": 2, "batch_size": 16, "step": "helpers_custom:step_with_tensor_branch"},
    }
    experiment = prepare_experiment(load_config(write_config(changes)))
    assert isinstance(experiment.trainer, CustomTrainer)
    checked = experiment.trainer.loop.feed_chunks[True]
    traces = checked.experimental_get_tracing_count()  # 2: tf.function traces again after the first trace made the optimizer's variables
    trainer = fit_through_feeds(experiment, 16, None)
    assert trainer.loop.feed_chunks[True] is checked and checked.experimental_get_tracing_count() == traces
    assert trainer.loop.train_chunk.experimental_get_tracing_count() == 0  # the tf.data chunk was never traced
