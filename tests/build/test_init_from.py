"""`model.init_from`: weights by layer name from a run, a .keras or a .weights.h5 file; the transfer-learning recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import HAS_MNIST, REPO, only_run, train

from kerasrun.rundir.io import read_json

NAMED: dict[str, Any] = {
    "model": {
        "layers": [
            {"Dense": {"units": 8, "activation": "relu", "name": "hidden"}},
            {"Dense": {"units": 3, "activation": "softmax", "name": "head"}},
        ]
    },
    "train": {"epochs": 2},
}


def weights(run: Path) -> dict[str, list[np.ndarray]]:
    """The saved model's weights by layer name."""
    from kerasrun._tf import keras

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


@pytest.fixture
def base(runner, write_config, tmp_path) -> Path:
    """A trained run with layers `hidden` and `head`."""
    assert train(runner, write_config(NAMED, "base.yaml"), tmp_path / "base").exit_code == 0
    return only_run(tmp_path / "base")


def with_head(name: str, **init_from: Any) -> dict[str, Any]:
    """NAMED with a new head name, a frozen hidden layer and the given init_from."""
    layers = [
        {"Dense": {"units": 8, "activation": "relu", "name": "hidden", "trainable": False}},
        {"Dense": {"units": 3, "activation": "softmax", "name": name}},
    ]
    return {"model": {"layers": layers, "init_from": init_from}, "train": {"epochs": 2}}


def test_frozen_base_and_a_new_head(runner, write_config, base, runs_dir) -> None:
    result = train(runner, write_config(with_head("new_head", path=str(base), skip=["new_head"])), runs_dir)
    assert result.exit_code == 0, result.output
    run = only_run(runs_dir)
    assert read_json(run / "run.json")["init_from"] == {
        "path": str(base / "model.keras"),
        "loaded": ["hidden"],
        "skipped": ["new_head"],
        "left_out": ["head"],
    }
    ours, theirs = weights(run), weights(base)
    assert all(np.array_equal(a, b) for a, b in zip(ours["hidden"], theirs["hidden"], strict=True))  # frozen: unchanged


def test_unmatched_layers_are_listed(runner, write_config, base, runs_dir) -> None:
    result = train(runner, write_config(with_head("new_head", path=str(base), skip=["nwe_head"])), runs_dir)
    assert result.exit_code == 2
    assert "model.init_from.skip[0]: the model has no layer `nwe_head` with weights" in result.output
    assert "did you mean `new_head`" in result.output
    assert "has no layer named `new_head`" in result.output and "list them under model.init_from.skip" in result.output
    assert not runs_dir.exists() or not list(runs_dir.iterdir())  # nothing written


def test_shapes_must_match(runner, write_config, base, runs_dir) -> None:
    changes = {
        "model": {
            "layers": [{"Dense": {"units": 5, "name": "hidden"}}, {"Dense": {"units": 3, "activation": "softmax", "name": "head"}}],
            "init_from": str(base),
        }
    }
    result = train(runner, write_config(changes), runs_dir)
    assert result.exit_code == 2 and "layer `hidden` has weights of other shapes" in result.output


def test_by_run_name_and_from_a_keras_file_and_the_cli_option(runner, write_config, base, tmp_path) -> None:
    by_name = train(runner, write_config(with_head("head", run="tiny")), tmp_path / "base")  # found under the same runs folder
    assert by_name.exit_code == 0, by_name.output
    from_file = train(runner, write_config(with_head("head")), tmp_path / "file", "--init-from", str(base / "model.keras"))
    assert from_file.exit_code == 0, from_file.output
    assert read_json(only_run(tmp_path / "file") / "run.json")["init_from"]["loaded"] == ["hidden", "head"]
    missing = train(runner, write_config(with_head("head", run="nothing")), tmp_path / "none")
    assert missing.exit_code == 2 and "no completed run named `nothing`" in missing.output


def test_a_weights_file_loads_by_position(runner, write_config, base, tmp_path) -> None:
    from kerasrun._tf import keras

    model = keras.saving.load_model(base / "model.keras", safe_mode=True)
    model.save_weights(tmp_path / "base.weights.h5")
    result = train(
        runner, write_config(NAMED), tmp_path / "runs", "--init-from", str(tmp_path / "base.weights.h5"), "--set", "train.epochs=1"
    )
    assert result.exit_code == 0, result.output
    skip = train(runner, write_config(with_head("head", path=str(tmp_path / "base.weights.h5"), skip=["head"])), tmp_path / "skip")
    assert skip.exit_code == 2 and "stores weights by position, not by layer name" in skip.output


def test_initial_epoch_numbers_on_from_init_from(runner, write_config, base, runs_dir) -> None:
    changes = {"model": {**NAMED["model"], "init_from": str(base)}, "train": {"epochs": 4, "initial_epoch": 2}}
    result = train(runner, write_config(changes), runs_dir)
    assert result.exit_code == 0, result.output
    assert read_json(only_run(runs_dir) / "history.json")["epoch"] == [3, 4]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MNIST, reason="real MNIST not present")
def test_transfer_learning_recipe_in_three_configs(runner, mnist_env, runs_dir) -> None:
    """MNIST base -> frozen base + new Fashion-MNIST head -> everything fine-tuned at a low rate: no Python."""
    short = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=300"]  # CI-sized; the configs train longer
    runs = {}
    for phase in ("transfer_1_base", "transfer_2_head", "transfer_3_finetune"):
        result = train(runner, REPO / "configs" / f"{phase}.yaml", runs_dir, *short)
        assert result.exit_code == 0, result.output
        runs[phase] = Path(next(line.split()[1] for line in result.output.splitlines() if line.startswith("done: ")))
    head_info = read_json(runs["transfer_2_head"] / "run.json")["init_from"]
    assert (head_info["loaded"], head_info["skipped"], head_info["left_out"]) == (
        ["conv_1", "conv_2", "features"],
        ["fashion_head"],
        ["digit_head"],
    )
    base, head, tuned = (weights(runs[p]) for p in ("transfer_1_base", "transfer_2_head", "transfer_3_finetune"))
    for layer in ("conv_1", "conv_2", "features"):
        assert all(np.array_equal(a, b) for a, b in zip(base[layer], head[layer], strict=True))  # frozen in phase 2
        assert not all(np.array_equal(a, b) for a, b in zip(head[layer], tuned[layer], strict=True))  # trained in phase 3
    head_accuracy = read_json(runs["transfer_2_head"] / "metrics.json")["sparse_categorical_accuracy"]
    tuned_accuracy = read_json(runs["transfer_3_finetune"] / "metrics.json")["sparse_categorical_accuracy"]
    # MNIST features carry over to clothes: far above chance (0.1) after 300 steps of the head alone
    # (the configs' full 3 epochs reach 0.74 here, fine-tuning 0.78; see docs/runs.md).
    assert head_accuracy > 0.4, head_accuracy
    assert tuned_accuracy >= head_accuracy - 0.01, (head_accuracy, tuned_accuracy)


def test_the_init_from_option_keeps_the_configs_skip_list(runner, write_config, base, runs_dir) -> None:
    config = write_config(with_head("new_head", run="not-this-one", skip=["new_head"]))
    result = train(runner, config, runs_dir, "--init-from", str(base))
    assert result.exit_code == 0, result.output
    info = read_json(only_run(runs_dir) / "run.json")["init_from"]
    assert (info["path"], info["skipped"]) == (str(base / "model.keras"), ["new_head"])
