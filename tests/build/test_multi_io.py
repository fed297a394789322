"""Functional graphs from YAML: named inputs, `inputs:` per layer, merge layers, named outputs, per-output compile."""

from __future__ import annotations

import pytest
import yaml
from helpers import REPO, only_run, train

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

SEED = yaml.safe_load((REPO / "configs" / "multi_io.yaml").read_text())


def write(tmp_path, changes: dict) -> str:
    """configs/multi_io.yaml with some sections replaced, written to tmp_path."""
    config = {**SEED, **{k: {**SEED[k], **v} for k, v in changes.items()}}
    path = tmp_path / "multi_io.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_seed_graph_trains_with_both_loops_identically(runner, tmp_path) -> None:
    histories = {}
    for loop in ("fit", "custom"):
        result = train(runner, str(REPO / "configs" / "multi_io.yaml"), tmp_path / loop, "--set", f"train.loop={loop}")
        assert result.exit_code == 0, result.output
        histories[loop] = read_json(only_run(tmp_path / loop) / "history.json")
    assert histories["custom"] == histories["fit"]
    assert {
        "loss",
        "score_output_loss",
        "class_output_loss",
        "class_output_auc",
        "score_output_mean_absolute_error",
        "val_class_output_categorical_accuracy",
    } <= set(histories["fit"])
    summary = (only_run(tmp_path / "fit") / "summary.txt").read_text()
    assert "img_input" in summary and "ts_input" in summary and "merged" in summary


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_list_loss_with_a_null_output(runner, tmp_path, loop) -> None:
    config = write(
        tmp_path, {"compile": {"loss": ["mean_squared_error", None], "metrics": [[], ["categorical_accuracy"]], "loss_weights": None}}
    )
    result = train(runner, config, tmp_path / "runs", "--set", f"train.loop={loop}")
    assert result.exit_code == 0, result.output
    history = read_json(only_run(tmp_path / "runs") / "history.json")
    assert "class_output_categorical_accuracy" in history and "class_output_loss" not in history
    assert "loss" in history and "score_output_loss" not in history  # one loss: Keras logs it as `loss`


def test_loss_weights_weigh_the_total(runner, tmp_path) -> None:
    result = train(runner, str(REPO / "configs" / "multi_io.yaml"), tmp_path / "runs", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    history = read_json(only_run(tmp_path / "runs") / "history.json")
    # Keras's total is the weighted sum of the per-output losses (averaged over the epoch's batches).
    assert history["val_loss"][0] == pytest.approx(
        2.0 * history["val_score_output_loss"][0] + history["val_class_output_loss"][0], rel=1e-5
    )


@pytest.mark.parametrize(
    "changes, key, message",
    [
        (
            {"compile": {"loss": {"score_output": "mse", "clas_output": "categorical_crossentropy"}}},
            "compile.loss.clas_output",
            "did you mean `class_output`",
        ),
        ({"compile": {"metrics": {"scor_output": ["mae"]}}}, "compile.metrics.scor_output", "did you mean `score_output`"),
        ({"model": {"outputs": ["score_output", "class_out"]}}, "model.outputs", "did you mean `class_output`"),
    ],
)
def test_unknown_output_names(runner, tmp_path, changes, key, message) -> None:
    result = train(runner, write(tmp_path, changes), tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert key in result.output and message in result.output
    assert not (tmp_path / "runs").exists()


def test_layer_inputs_must_exist_earlier(runner, tmp_path) -> None:
    layers = list(SEED["model"]["layers"])
    layers[4] = {"Concatenate": {"name": "merged"}, "inputs": ["img_pol", "ts_pool"]}
    result = train(runner, write(tmp_path, {"model": {"layers": layers}}), tmp_path / "runs")
    assert result.exit_code == 2 and "model.layers[4].inputs" in result.output and "did you mean `img_pool`" in result.output
    # A reference to a later layer (which is how a cycle would have to be written) is refused the same way.
    layers = list(SEED["model"]["layers"])
    layers[0] = {"Conv2D": {"filters": 3, "kernel_size": 3, "name": "img_conv"}, "inputs": "merged"}
    result = train(runner, write(tmp_path, {"model": {"layers": layers}}), tmp_path / "runs")
    assert result.exit_code == 2 and "`merged` is not a model input or an earlier layer (layers are applied in order)" in result.output


def test_several_inputs_need_explicit_wiring(runner, tmp_path) -> None:
    layers = [{"Dense": {"units": 2}}] + list(SEED["model"]["layers"])
    result = train(runner, write(tmp_path, {"model": {"layers": layers}}), tmp_path / "runs")
    assert result.exit_code == 2 and "with several model inputs, say which this layer takes" in result.output


def test_class_weights_per_output_give_the_hand_computed_loss(runner, tmp_path) -> None:
    import numpy as np

    from kerasrun._tf import keras
    from kerasrun.examples.multi_io import seed_data

    changes = {
        "compile": {
            "optimizer": {"SGD": {"learning_rate": 0.0}},
            "metrics": {},
            "loss_weights": None,
        },  # no learning: the loss is the start's
        "train": {
            "epochs": 1,
            "batch_size": 100,
            "validation_split": None,
            "class_weight": {"class_output": {0: 3.0, 2: 0.5}},
        },  # one batch
    }
    result = train(runner, write(tmp_path, changes), tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    history = read_json(run / "history.json")
    data = seed_data(100, 20)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    score, probabilities = model.predict(data["x_train"], verbose=0)
    targets = data["y_train"]["class_output"]
    labels = targets.argmax(axis=1)
    weights = np.select([labels == 0, labels == 2], [3.0, 0.5], 1.0)
    cross_entropy = -np.log(np.clip(probabilities[np.arange(100), labels], 1e-7, 1.0))
    assert history["class_output_loss"][0] == pytest.approx((cross_entropy * weights).sum() / 100, rel=1e-5)
    mse = ((score - data["y_train"]["score_output"]) ** 2).mean()
    assert history["score_output_loss"][0] == pytest.approx(mse, rel=1e-5)  # the other output stays unweighted


def test_class_weight_errors_with_several_outputs(runner, tmp_path) -> None:
    cases = [
        (
            {"class_weight": {"score_output": {0: 2.0}}},
            "train.class_weight.score_output",
            "class weights need class targets, but compile.loss.score_output mean_squared_error is a regression loss",
        ),
        ({"class_weight": {"clas_output": {0: 2.0}}}, "train.class_weight.clas_output", "did you mean `class_output`"),
        ({"class_weight": {0: 2.0}}, "train.class_weight", "key class weights by output name"),
    ]
    for train_changes, key, message in cases:
        result = train(runner, write(tmp_path, {"train": train_changes}), tmp_path / "runs")
        assert result.exit_code == 2, result.output
        assert key in result.output and message in result.output, result.output


def test_data_names_must_match_the_model(runner, tmp_path) -> None:
    result = train(runner, write(tmp_path, {"data": {"function": "helpers_custom:misnamed_multi_io", "kwargs": {}}}), tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "x array `image_input` matches no model input" in result.output and "did you mean `img_input`" in result.output
    assert "the model's output `class_output` gets no data" in result.output
    assert not (tmp_path / "runs").exists()


def test_dataset_yielding_sample_weights_trains_in_both_loops(runner, write_config, tmp_path) -> None:
    changes = {
        "data": {
            "source": "python",
            "function": "helpers_custom:weighted_dataset",
            "generator": None,
            "means": None,
            "cov": None,
            "samples_per_class": None,
            "test_fraction": None,
        },
        "model": {"layers": [{"Dense": {"units": 2, "activation": "softmax"}}]},
        "train": {"validation_split": None, "stratify": False},
    }
    histories = {}
    for loop in ("fit", "custom"):
        result = runner.invoke(
            app, ["train", str(write_config(changes)), "--runs-dir", str(tmp_path / loop), "--set", f"train.loop={loop}"]
        )
        assert result.exit_code == 0, result.output
        histories[loop] = read_json(only_run(tmp_path / loop) / "history.json")
    assert histories["custom"] == histories["fit"]


def test_npz_arrays_by_name(runner, tmp_path) -> None:
    import numpy as np

    from kerasrun.examples.multi_io import seed_data

    data = seed_data(40, 8)
    np.savez(
        tmp_path / "multi.npz",
        img=data["x_train"]["img_input"],
        ts=data["x_train"]["ts_input"],
        score=data["y_train"]["score_output"],
        cls=data["y_train"]["class_output"],
    )
    source = {
        "source": "npz",
        "path": str(tmp_path / "multi.npz"),
        "x": {"img_input": "img", "ts_input": "ts"},
        "y": {"score_output": "score", "class_output": "cls"},
        "x_test": None,
        "y_test": None,
    }
    config = {**SEED, "data": source}
    path = tmp_path / "npz.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = train(runner, str(path), tmp_path / "runs", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    config["data"] = {**source, "y": {"score_output": "score", "class_output": "klass"}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = train(runner, str(path), tmp_path / "runs2")
    assert result.exit_code == 2 and "data.y.class_output" in result.output and "has no array `klass`" in result.output


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_list_data_equals_dict_data(runner, tmp_path, loop) -> None:
    histories = {}
    for form, function in (("dict", "kerasrun.examples.multi_io:seed_data"), ("list", "kerasrun.examples.multi_io:seed_data_as_lists")):
        result = train(runner, write(tmp_path, {"data": {"function": function}}), tmp_path / form, "--set", f"train.loop={loop}")
        assert result.exit_code == 0, result.output
        histories[form] = read_json(only_run(tmp_path / form) / "history.json")
    assert histories["list"] == histories["dict"]


def test_synthetic_named_arrays(runner, tmp_path) -> None:
    source = {
        "source": "synthetic",
        "generator": "random",
        "samples": 60,
        "test_fraction": 0.2,
        "x_shape": {"img_input": [32, 32, 3], "ts_input": [20, 10]},
        "y_shape": {"score_output": [1]},
        "classes": {"class_output": 5},
    }
    config = {
        **SEED,
        "data": source,
        "compile": {
            **SEED["compile"],
            "loss": {"score_output": "mse", "class_output": "sparse_categorical_crossentropy"},
            "metrics": {"class_output": ["sparse_categorical_accuracy"]},
        },
    }
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = train(runner, str(path), tmp_path / "runs", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert "class_output_sparse_categorical_accuracy" in read_json(only_run(tmp_path / "runs") / "metrics.json")


def test_balanced_class_weight_per_output(runner, tmp_path) -> None:
    import numpy as np

    from kerasrun.config.load import load_config
    from kerasrun.data import load_data

    config = load_config(write(tmp_path, {"train": {"validation_split": None, "class_weight": {"class_output": "balanced"}}}))
    data = load_data(config)
    labels = data.train.y["class_output"].argmax(axis=1)
    counts = np.bincount(labels, minlength=5)
    expected = len(labels) / (5 * counts[labels])  # scikit-learn's n / (classes x count)
    assert np.allclose(data.train.sample_weight["class_output"], expected)
    assert np.array_equal(data.train.sample_weight["score_output"], np.ones(len(labels), np.float32))
