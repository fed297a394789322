"""`source: image_folder` against the same images as in-memory arrays, Keras's own loader, and broken folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import SHARED_DATA, merge, needs_mnist, only_run, train
from helpers_images import mnist_sample, write_image_folder
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.config.load import load_config
from kerasrun.data import Stream, load_data

pytestmark = needs_mnist
PER_CLASS = 30  # 300 training images: enough to learn something, seconds to write and read

BASE: dict[str, Any] = {
    "name": "pngs",
    "seed": 3,
    "data": {"source": "image_folder", "path": "train", "image_size": [28, 28], "color_mode": "grayscale", "preprocess": [{"scale": 255}]},
    "model": {
        "inputs": {"image": [28, 28, 1]},
        "layers": [{"Flatten": {}}, {"Dropout": {"rate": 0.2}}, {"Dense": {"units": 10, "activation": "softmax"}}],
    },
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "stratify": True},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ PNG folders from the first images of each MNIST digit, plus the arrays they came from."""
    root = tmp_path_factory.mktemp("images")
    x, y = mnist_sample(SHARED_DATA / "mnist.npz", PER_CLASS)
    write_image_folder(x, y, root / "train")
    x_test, y_test = mnist_sample(SHARED_DATA / "mnist.npz", 5, "test")
    write_image_folder(x_test, y_test, root / "test")
    # The order Keras lists the files in: class folders sorted, files by name (the index) within each;
    # the training folder then shuffled as image_dataset_from_directory(shuffle=True, seed=3) shuffles it.
    order, order_test = np.argsort(y, kind="stable"), np.argsort(y_test, kind="stable")
    order = order[np.random.RandomState(BASE["seed"]).permutation(len(order))]
    np.savez(
        root / "same.npz", x_train=x[order][..., None], y_train=y[order], x_test=x_test[order_test][..., None], y_test=y_test[order_test]
    )
    return root


def write(folder: Path, name: str, changes: dict[str, Any]) -> Path:
    """A config in `folder` (paths in it are relative to the config's folder)."""
    path = folder / name
    path.write_text(yaml.safe_dump(merge(BASE, changes), sort_keys=False))
    return path


def test_pixels_and_labels_are_the_arrays_written(folders: Path) -> None:
    data = load_data(
        load_config(
            write(
                folders, "a.yaml", {"data": {"preprocess": [], "test_path": "test"}, "train": {"validation_split": None, "stratify": False}}
            )
        )
    )
    with np.load(folders / "same.npz") as same:
        assert data.train.x.dtype == np.float32 and data.train.x.shape == (10 * PER_CLASS, 28, 28, 1)
        np.testing.assert_array_equal(data.train.x, same["x_train"])
        np.testing.assert_array_equal(data.train.y, same["y_train"])
        np.testing.assert_array_equal(data.test.x, same["x_test"])
    assert data.class_names == [str(d) for d in range(10)]


def test_same_values_as_keras_loader_for_rgb_jpeg_resized_and_cropped(tmp_path: Path) -> None:
    from kerasrun._tf import keras

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 20, 30, 3), dtype=np.uint8)
    write_image_folder(images, np.array([0, 1, 2, 0, 1, 2]), tmp_path / "jpgs", fmt="jpg")
    changes = {"data": {"path": "jpgs", "image_size": [16, 16], "color_mode": "rgb", "crop_to_aspect_ratio": True, "preprocess": []}}
    data = load_data(load_config(write(tmp_path, "c.yaml", merge(changes, {"train": {"validation_split": None, "stratify": False}}))))
    expected = keras.utils.image_dataset_from_directory(
        str(tmp_path / "jpgs"), batch_size=None, image_size=(16, 16), shuffle=False, crop_to_aspect_ratio=True, verbose=False
    )
    pixels, labels = zip(*expected.as_numpy_iterator(), strict=True)
    order = np.random.RandomState(BASE["seed"]).permutation(6)  # the training folder in Keras's seeded order
    np.testing.assert_array_equal(data.train.x, np.stack(pixels)[order])
    np.testing.assert_array_equal(data.train.y, np.array(labels)[order])
    streamed = load_data(
        load_config(
            write(
                tmp_path, "s.yaml", merge(changes, {"data": {"memory_limit_mb": 0}, "train": {"validation_split": None, "stratify": False}})
            )
        )
    )
    assert isinstance(streamed.train, Stream)
    decoded, streamed_labels = zip(*streamed.train.elements().as_numpy_iterator(), strict=True)
    np.testing.assert_array_equal(np.stack(decoded), data.train.x)  # Keras's decoder, file by file, in the same order
    np.testing.assert_array_equal(np.array(streamed_labels), data.train.y)


def test_trains_exactly_like_the_same_arrays_in_an_npz(folders: Path, runner: CliRunner, tmp_path: Path) -> None:
    images = write(folders, "images.yaml", {"data": {"test_path": "test"}})
    npz = {"source": "npz", "path": "same.npz", "image_size": None, "color_mode": None}
    arrays = write(folders, "arrays.yaml", {"data": npz})
    histories = []
    for config in (images, arrays):
        runs = tmp_path / config.stem
        result = train(runner, config, runs)
        assert result.exit_code == 0, result.output
        run = only_run(runs)
        histories.append(((run / "history.json").read_bytes(), (run / "metrics.json").read_bytes()))
    assert histories[0] == histories[1]
    assert json.loads((only_run(tmp_path / "images") / "classes.json").read_text()) == [str(d) for d in range(10)]


def test_test_fraction_is_stratified(folders: Path) -> None:
    config = write(folders, "f.yaml", {"data": {"test_fraction": 0.2}, "train": {"validation_split": None, "stratify": False}})
    data = load_data(load_config(config))
    assert len(data.test) == 2 * PER_CLASS and np.bincount(data.test.y).tolist() == [6] * 10


def broken_copy(folders: Path, tmp_path: Path) -> Path:
    """A copy of the training folder with two corrupt PNGs (one truncated, one not an image at all)."""
    root = tmp_path / "broken"
    shutil.copytree(folders / "train", root / "train")
    first = sorted((root / "train" / "3").iterdir())[0]
    first.write_bytes(first.read_bytes()[:40])
    (root / "train" / "7" / "zz.png").write_text("not a png")
    return root


def test_corrupt_images_are_refused_by_name_before_any_folder(folders: Path, tmp_path: Path, runner: CliRunner) -> None:
    root = broken_copy(folders, tmp_path)
    result = train(runner, write(root, "b.yaml", {}), tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "2 of 301 images" in result.output and re.search(r"cannot be decoded: 3/\d{5}\.png, 7/zz\.png", result.output)
    assert "bad_images: skip" in result.output
    assert not (tmp_path / "runs").exists()


def test_corrupt_images_are_skipped_and_counted_when_asked(folders: Path, tmp_path: Path, runner: CliRunner) -> None:
    root = broken_copy(folders, tmp_path)
    config = write(root, "s.yaml", {"data": {"bad_images": "skip"}, "train": {"epochs": 1}})
    data = load_data(load_config(config))
    assert len(data.train) + len(data.validation) == 10 * PER_CLASS - 1  # 301 files, 2 skipped
    assert data.notes and "skipped 2 image(s)" in data.notes[0]
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "note: skipped 2 image(s)" in result.output


def test_folder_problems_are_located_all_at_once(folders: Path, tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "odd"
    shutil.copytree(folders / "train", root / "train")
    shutil.copytree(folders / "test", root / "test")
    for name in ("1", "5"):
        shutil.rmtree(root / "train" / name)
        (root / "train" / name).mkdir()
    (root / "train" / "5" / "notes.txt").write_text("not an image")
    shutil.rmtree(root / "test" / "9")
    result = train(runner, write(root, "o.yaml", {"data": {"test_path": "test"}}), tmp_path / "runs")
    assert result.exit_code == 2 and "2 problems" in result.output, result.output
    assert "train/1 has no images" in result.output and "train/5 has no images" in result.output
    shutil.copytree(folders / "train", root / "train2")
    result = train(runner, write(root, "p.yaml", {"data": {"path": "train2", "test_path": "test"}}), tmp_path / "runs")
    assert result.exit_code == 2 and "missing ['9']" in result.output and "data.test_path" in result.output, result.output
    result = train(runner, write(root, "n.yaml", {"data": {"path": "nowhere"}}), tmp_path / "runs")
    assert result.exit_code == 2 and "no such folder" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_schema_rules(tmp_path: Path, runner: CliRunner) -> None:

    config = write(tmp_path, "v.yaml", {"data": {"test_path": "t", "test_fraction": 0.2, "image_size": [28, 0], "color_mode": "grey"}})
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2, result.output
    assert "data.image_size[1]" in result.output and "data.color_mode" in result.output and "'grayscale'" in result.output
    config = write(tmp_path, "w.yaml", {"data": {"test_path": "t", "test_fraction": 0.2, "crop_to_aspect_ratio": True}})
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2 and "test_path or test_fraction, not both" in result.output, result.output


def test_images_loaded_at_another_size_point_to_image_size_and_color_mode(folders: Path, runner: CliRunner, tmp_path: Path) -> None:
    # A reshape step (the hint for arrays) can't resize images or change their channels.
    config = write(folders, "size.yaml", {"data": {"image_size": [32, 32], "color_mode": "rgb"}, "train": {"epochs": 1}})
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "model.inputs: the data's samples have shape (32, 32, 3) but the model expects (28, 28, 1)" in result.output
    assert "set data.image_size: [28, 28] and data.color_mode: grayscale to load images the model's size" in result.output
    assert not (tmp_path / "runs").exists()


def test_data_command_reports_splits_classes_and_throughput(folders: Path, runner: CliRunner) -> None:

    config = write(folders, "d.yaml", {"data": {"test_path": "test"}})
    result = runner.invoke(app, ["data", str(config), "--json", "--seconds", "0.5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["train"]["rows"] + report["validation"]["rows"] == 10 * PER_CLASS and report["test"]["rows"] == 50
    assert report["train"]["arrays"]["x"] == {"shape": [240, 28, 28, 1], "dtype": "float32"}
    assert report["test"]["classes"] == {str(d): 5 for d in range(10)} and report["class_names"] == [str(d) for d in range(10)]
    speed = report["throughput"]
    assert speed["batches"] > 0 and speed["samples"] >= speed["batches"] and speed["samples_per_s"] > 0
    table = runner.invoke(app, ["data", str(config), "--seconds", "0"])
    assert table.exit_code == 0 and "samples per class" in table.output and "x (240, 28, 28, 1) float32" in table.output, table.output
    bad = runner.invoke(app, ["data", str(write(folders, "e.yaml", {"data": {"path": "nowhere"}}))])
    assert bad.exit_code == 2 and "no such folder" in bad.output


def test_a_folder_over_the_memory_limit_streams_with_the_same_numbers(folders: Path, runner: CliRunner, tmp_path: Path) -> None:
    in_memory = write(folders, "mem.yaml", {"data": {"test_path": "test"}, "train": {"shuffle": False}})
    streamed = write(folders, "str.yaml", {"data": {"test_path": "test", "memory_limit_mb": 0}, "train": {"shuffle": False}})
    runs = []
    for config in (in_memory, streamed):
        result = train(runner, config, tmp_path / config.stem)
        assert result.exit_code == 0, result.output
        runs.append(only_run(tmp_path / config.stem))
    assert "note: streaming the 300 images" in result.output and "over memory_limit_mb 0" in result.output
    assert [(r / "history.json").read_bytes() for r in runs] == [(runs[0] / "history.json").read_bytes()] * 2
    data = load_data(load_config(streamed))
    assert isinstance(data.train, Stream) and np.bincount(data.train.y).tolist() == [24] * 10  # stratified validation split


def test_a_streamed_folder_refuses_or_skips_bad_images(folders: Path, tmp_path: Path, runner: CliRunner) -> None:
    root = broken_copy(folders, tmp_path)
    result = train(runner, write(root, "b.yaml", {"data": {"memory_limit_mb": 0}}), tmp_path / "runs")
    assert result.exit_code == 2 and "2 of 301 images" in result.output, result.output
    config = write(root, "s.yaml", {"data": {"memory_limit_mb": 0, "bad_images": "skip"}, "train": {"epochs": 1}})
    data = load_data(load_config(config))
    assert len(data.train) + len(data.validation) == 10 * PER_CLASS - 1
    assert len(list(data.train.elements().as_numpy_iterator())) == len(data.train)


def test_auc_on_a_streamed_ten_class_folder_is_refused_before_the_run_folder(folders: Path, runner: CliRunner, tmp_path: Path) -> None:
    changes = {"data": {"memory_limit_mb": 0}, "compile": {"metrics": [], "weighted_metrics": ["AUC"]}, "train": {"epochs": 1}}
    config = write(folders, "auc.yaml", changes)
    assert isinstance(load_data(load_config(config)).train, Stream)  # the streamed reader's batch is checked, not an in-memory one
    result = train(runner, config, tmp_path / "runs")
    assert result.exit_code == 2, result.output
    # Its first batch's labels are checked as in-memory targets are, at the metric's key.
    assert "compile.weighted_metrics[0]: train and validation targets for output" in result.output, result.output
    assert "are 1 wide, but the output has 10 units: AUC wants a 0/1 target for every output unit" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_streamed_folder_cached_to_the_run_folder_trains_the_same(folders: Path, runner: CliRunner, tmp_path: Path) -> None:
    changes: dict[str, Any] = {"data": {"test_path": "test", "memory_limit_mb": 0}, "train": {"epochs": 3}}
    plain = write(folders, "nocache.yaml", changes)
    kept = write(folders, "cache.yaml", {**changes, "data": {**changes["data"], "cache": "keep"}})
    runs = []
    for config in (plain, kept):
        result = train(runner, config, tmp_path / config.stem)
        assert result.exit_code == 0, result.output
        runs.append(only_run(tmp_path / config.stem))
    assert (runs[0] / "history.json").read_bytes() == (runs[1] / "history.json").read_bytes()
    assert (runs[0] / "metrics.json").read_bytes() == (runs[1] / "metrics.json").read_bytes()
    written = {path.name.split(".")[0] for path in (runs[1] / "cache").iterdir()}  # `keep`: the cache stays after completion
    assert {"train", "validation", "test"} <= written and not (runs[0] / "cache").exists()
    assert said(f"note: the decoded rows stay cached in {runs[1] / 'cache'} (", result.output)
    # `file`: the cache is removed when the run completes, and the output says where it was.
    cached = write(folders, "cache_file.yaml", {**changes, "data": {**changes["data"], "cache": "file"}})
    short = train(runner, cached, tmp_path / "short", "--set", "train.epochs=2")
    assert short.exit_code == 0, short.output
    run = only_run(tmp_path / "short")
    assert not (run / "cache").exists()
    assert said(f"note: removed the decoded rows cached in {run / 'cache'} (", short.output)
    # Resumed, the run folder's cache is rebuilt (an interrupted run may have left it half-written): the same bytes.
    resumed = runner.invoke(app, ["resume", str(run), "--set", "train.epochs=3", "--progress", "none"])
    assert resumed.exit_code == 0, resumed.output
    assert (run / "history.json").read_bytes() == (runs[1] / "history.json").read_bytes()
    assert not (run / "cache").exists() and said("note: removed the decoded rows cached in", resumed.output)


def said(text: str, output: str) -> bool:
    """Whether the command output holds `text`, however the console wrapped it (whitespace ignored)."""
    return "".join(text.split()) in "".join(output.split())


def seed_putting_last_file_in_validation(count: int, fraction: float) -> int:
    """A seed whose Keras order puts the folder's last file (in sorted order) into the last-fraction validation split."""
    split_at = int(np.floor(count * (1 - fraction)))
    return next(s for s in range(1000) if int(np.flatnonzero(np.random.RandomState(s).permutation(count) == count - 1)[0]) >= split_at)


def test_validation_split_holds_keras_subset_of_every_class_and_reruns_the_same(folders: Path) -> None:
    from kerasrun._tf import keras

    config = write(folders, "v.yaml", {"train": {"stratify": False}})
    data, again = load_data(load_config(config)), load_data(load_config(config))
    assert sorted(np.unique(data.validation.y).tolist()) == list(range(10))  # sorted files would validate on 8 and 9 only
    np.testing.assert_array_equal(data.train.x, again.train.x)
    np.testing.assert_array_equal(data.validation.y, again.validation.y)
    # The images Keras's own loader validates on with the same seed and fraction: the same set.
    theirs = keras.utils.image_dataset_from_directory(
        str(folders / "train"),
        batch_size=None,
        image_size=(28, 28),
        color_mode="grayscale",
        validation_split=0.2,
        subset="validation",
        seed=3,
        verbose=False,
    )
    keyed = sorted((int(label), image.tobytes()) for image, label in theirs.as_numpy_iterator())
    ours = sorted(
        (int(label), (image * 255).astype(np.float32).tobytes()) for image, label in zip(data.validation.x, data.validation.y, strict=True)
    )
    assert ours == keyed
    streamed = load_data(load_config(config, ["data.memory_limit_mb=0"]))
    assert isinstance(streamed.validation, Stream) and streamed.validation.y.tolist() == data.validation.y.tolist()


def test_an_in_memory_folder_resumes_to_the_same_bytes(folders: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write(folders, "r.yaml", {"data": {"test_path": "test"}, "train": {"stratify": False, "epochs": 3}})
    whole = train(runner, config, tmp_path / "whole")
    short = train(runner, config, tmp_path / "short", "--set", "train.epochs=2")
    assert whole.exit_code == 0 and short.exit_code == 0, whole.output + short.output
    resumed = runner.invoke(app, ["resume", str(only_run(tmp_path / "short")), "--set", "train.epochs=3", "--progress", "none"])
    assert resumed.exit_code == 0, resumed.output
    for name in ("history.json", "metrics.json"):
        assert (only_run(tmp_path / "short") / name).read_bytes() == (only_run(tmp_path / "whole") / name).read_bytes()


def test_a_class_the_split_leaves_untrained_is_refused(folders: Path, tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "lone"
    shutil.copytree(folders / "train", root / "train")
    (root / "train" / "zz").mkdir()
    shutil.copy(next((folders / "train" / "3").iterdir()), root / "train" / "zz" / "only.png")
    seed = seed_putting_last_file_in_validation(10 * PER_CLASS + 1, 0.2)
    for memory in ("1000", "0"):  # in memory and streamed
        config = write(root, f"z{memory}.yaml", {"seed": seed, "data": {"memory_limit_mb": int(memory)}, "train": {"stratify": False}})
        result = runner.invoke(app, ["data", str(config), "--seconds", "0"])
        assert result.exit_code == 2, result.output
        assert "train.validation_split: the training split has 0 samples of class 10 (zz): 1 validation sample" in result.output
        assert "a class with one sample in all can't be in both splits" in result.output  # stratifying would refuse it
    assert train(runner, config, tmp_path / "runs").exit_code == 2 and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_mnist_pngs_with_validation_split_train_as_well_as_the_npz(tmp_path: Path, runner: CliRunner) -> None:
    """12,000 MNIST PNGs in class folders with validation_split 0.1 reach the test accuracy of the same images as an .npz."""
    x, y = mnist_sample(SHARED_DATA / "mnist.npz", 1200)
    with np.load(SHARED_DATA / "mnist.npz") as mnist:
        x_test, y_test = mnist["x_test"], mnist["y_test"]
    write_image_folder(x, y, tmp_path / "train")
    write_image_folder(x_test, y_test, tmp_path / "test")
    np.savez(tmp_path / "same.npz", x_train=x[..., None], y_train=y, x_test=x_test[..., None], y_test=y_test)  # MNIST's own order
    mlp = {
        "model": {
            "layers": [{"Flatten": {}}, {"Dense": {"units": 128, "activation": "relu"}}, {"Dense": {"units": 10, "activation": "softmax"}}]
        },
        "train": {"epochs": 5, "batch_size": 128, "validation_split": 0.1, "stratify": False},
    }
    images = write(tmp_path, "images.yaml", merge(mlp, {"data": {"test_path": "test"}}))
    arrays = write(
        tmp_path, "arrays.yaml", merge(mlp, {"data": {"source": "npz", "path": "same.npz", "image_size": None, "color_mode": None}})
    )
    accuracy = {}
    for config in (images, arrays):
        result = train(runner, config, tmp_path / config.stem)
        assert result.exit_code == 0, result.output
        accuracy[config.stem] = json.loads((only_run(tmp_path / config.stem) / "metrics.json").read_text())["accuracy"]
    print(f"test accuracy: image folder {accuracy['images']:.4f}, npz {accuracy['arrays']:.4f}")
    assert accuracy["arrays"] >= 0.93
    assert abs(accuracy["images"] - accuracy["arrays"]) <= 0.005, accuracy
