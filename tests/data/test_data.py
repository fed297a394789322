"""Data sources, preprocessing, validation splits, weights and the tf.data pipeline."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import HAS_MNIST, SHARED_DATA

from kerasrun.config.load import load_config
from kerasrun.data import (
    TENSOR_ALIGNMENT,
    Split,
    cast_aligned,
    empty_aligned,
    load_data,
    make_dataset,
    scale_aligned,
    share_with_tensorflow,
)
from kerasrun.data.epochs import EpochClock
from kerasrun.errors import ConfigError, DataUnavailableError


def load(write_config, changes, overrides=None):
    """load_data for TINY merged with changes."""
    return load_data(load_config(write_config(changes), overrides))


IRIS = {
    "data": {
        "source": "sklearn",
        "name": "iris",
        "test_fraction": 0.2,
        "means": None,
        "cov": None,
        "samples_per_class": None,
        "generator": None,
    },
    "train": {"validation_split": None, "stratify": False},
}


def test_sklearn_source_is_seeded_and_stratified(write_config) -> None:
    data = load(write_config, IRIS)
    assert len(data.train) == 120 and len(data.test) == 30
    assert np.bincount(data.test.y).tolist() == [10, 10, 10]
    again = load(write_config, IRIS)
    assert np.array_equal(data.test.x, again.test.x)


def test_blobs_follow_the_given_means(write_config) -> None:
    data = load(
        write_config, {"data": {"test_fraction": None, "samples_per_class": 2000}, "train": {"validation_split": None, "stratify": False}}
    )
    for label, mean in enumerate([[0, 0], [4, 0], [0, 4]]):
        assert np.allclose(data.train.x[data.train.y == label].mean(axis=0), mean, atol=0.1)


def test_random_generator(write_config) -> None:
    data = load(
        write_config,
        {
            "data": {
                "generator": "random",
                "means": None,
                "cov": None,
                "samples_per_class": None,
                "x_shape": [4, 3],
                "y_shape": [2],
                "samples": 10,
                "test_fraction": None,
            },
            "train": {"validation_split": None, "stratify": False},
        },
    )
    assert data.train.x.shape == (10, 4, 3) and data.train.y.shape == (10, 2)


def test_validation_split_is_keras_last_fraction(write_config) -> None:
    data = load(write_config, {"data": {"test_fraction": None}, "train": {"validation_split": 0.3, "stratify": False}})
    split_at = math.floor(300 * (1 - 0.3))
    assert len(data.train) == split_at and len(data.validation) == 300 - split_at
    full = load(write_config, {"data": {"test_fraction": None}, "train": {"validation_split": None, "stratify": False}})
    assert np.array_equal(data.validation.x, full.train.x[split_at:])


def test_stratified_validation_split(write_config) -> None:
    data = load(write_config, {"data": {"test_fraction": None}, "train": {"validation_split": 0.2, "stratify": True}})
    assert np.bincount(data.validation.y).tolist() == [20, 20, 20]


def test_validation_on_test_split(write_config) -> None:
    data = load(write_config, {"train": {"validation_split": None, "stratify": False, "validation_data": "test"}})
    assert data.validation is data.test


def test_preprocess_steps(write_config) -> None:
    data = load(
        write_config,
        {
            "data": {"preprocess": [{"reshape": [2, 1]}, {"scale": 2.0}, {"cast": "float16"}, {"one_hot": 3}]},
            "train": {"validation_split": None, "stratify": False},
        },
    )
    assert data.train.x.shape[1:] == (2, 1) and data.train.x.dtype == np.float16
    assert data.train.y.shape[1:] == (3,) and set(data.train.y.sum(axis=1)) == {1.0}


def test_bad_preprocess_is_located(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load(write_config, {"data": {"preprocess": [{"reshape": [5]}]}})
    assert info.value.problems[0].key == "data.preprocess[0].reshape"
    with pytest.raises(ConfigError, match=r"labels range over 0\.\.2, outside 0\.\.1"):
        load(write_config, {"data": {"preprocess": [{"one_hot": 2}]}})


def test_class_weights_become_sample_weights(write_config) -> None:
    data = load(
        write_config,
        {"train": {"class_weight": {1: 2.0}, "sample_weight": {"by_class": {2: 3.0, 1: 0.5}}, "validation_split": None, "stratify": False}},
    )
    expected = np.choose(data.train.y, [1.0, 2.0 * 0.5, 3.0])
    assert np.array_equal(data.train.sample_weight, expected.astype(np.float32))


def test_balanced_class_weight(write_config) -> None:
    base = {
        "data": {"samples_per_class": 100, "test_fraction": None},
        "train": {"validation_split": None, "stratify": False, "class_weight": "balanced"},
    }
    data = load(write_config, base)
    # n_samples / (n_classes * count): equal classes -> weight 1
    assert np.allclose(data.train.sample_weight, 1.0)


def test_class_weight_key_must_be_a_label(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load(write_config, {"train": {"class_weight": {7: 2.0, 9: 1.0}}})
    assert [p.key for p in info.value.problems] == ["train.class_weight.7", "train.class_weight.9"]
    assert "labels: [0, 1, 2]" in (info.value.problems[0].hint or "")


def test_class_weight_needs_class_labels(write_config) -> None:
    with pytest.raises(ConfigError, match="integer class labels"):
        load(
            write_config,
            {
                "data": {
                    "generator": "random",
                    "means": None,
                    "cov": None,
                    "samples_per_class": None,
                    "x_shape": [2],
                    "y_shape": [1],
                    "samples": 20,
                },
                "train": {"class_weight": {1: 2.0}, "validation_split": None, "stratify": False},
            },
        )


def test_npz_source(write_config, tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", a=np.ones((10, 3), np.float32), b=np.arange(10), w=np.full(10, 2.0, np.float32))
    data = load(
        write_config,
        {
            "data": {
                "source": "npz",
                "path": "d.npz",
                "x": "a",
                "y": "b",
                "sample_weight": "w",
                "generator": None,
                "means": None,
                "cov": None,
                "samples_per_class": None,
                "test_fraction": None,
            },
            "train": {"validation_split": None, "stratify": False},
        },
    )
    assert data.train.x.shape == (10, 3) and data.test is None and data.train.sample_weight[0] == 2.0
    with pytest.raises(ConfigError) as info:
        load(
            write_config,
            {
                "data": {
                    "source": "npz",
                    "path": "d.npz",
                    "x": "xx",
                    "generator": None,
                    "means": None,
                    "cov": None,
                    "samples_per_class": None,
                    "test_fraction": None,
                }
            },
        )
    assert "has no array `xx`" in info.value.problems[0].message and "a, b, w" in (info.value.problems[0].hint or "")


def test_csv_source(write_config, tmp_path: Path) -> None:
    rows = ["f1,f2,kind"] + [f"{i},{i * 2},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    changes = {
        "data": {
            "source": "csv",
            "path": "t.csv",
            "target": "kind",
            "test_fraction": 0.25,
            "generator": None,
            "means": None,
            "cov": None,
            "samples_per_class": None,
        },
        "train": {"validation_split": None, "stratify": False},
    }
    data = load(write_config, changes)
    assert data.train.x.shape == (15, 2) and set(data.train.y) == {0, 1}
    with pytest.raises(ConfigError, match="no column `knd`"):
        load(write_config, merge_target(changes, "knd"))


def merge_target(changes, target):
    """Same csv config with another target column."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in changes.items()}
    out["data"]["target"] = target
    return out


PY = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}


def test_python_source_forms(write_config) -> None:
    data = load(
        write_config,
        {
            "data": {"source": "python", "function": "helpers_custom:two_blobs", "kwargs": {"n": 20}, **PY},
            "train": {"validation_split": None, "stratify": False},
        },
    )
    assert data.train.x.shape == (40, 2) and data.test is None
    data = load(
        write_config,
        {
            "data": {"source": "python", "function": "helpers_custom:split_blobs", **PY},
            "train": {"validation_split": None, "stratify": False},
        },
    )
    assert len(data.train) == 50 and len(data.test) == 50
    data = load(
        write_config,
        {
            "data": {"source": "python", "function": "helpers_custom:blob_dataset", **PY},
            "train": {"validation_split": None, "stratify": False, "class_weight": {1: 3.0}},
        },
    )
    _x, y, w = next(iter(data.train))
    assert np.array_equal(w.numpy(), np.where(y.numpy() == 1, 3.0, 1.0))


def test_validation_split_of_a_dataset_is_seeded_take_skip(write_config) -> None:
    changes = {
        "data": {"source": "python", "function": "helpers_custom:blob_dataset", **PY},
        "train": {"validation_split": 0.25, "stratify": False},
    }
    data = load(write_config, changes)
    # 100 samples in batches of 10: the last ceil(0.25 * 10) = 3 batches validate.
    assert int(data.validation.cardinality()) == 3 and int(data.train.cardinality()) == 7
    from helpers_custom import two_blobs

    x, _ = two_blobs(50)
    assert np.array_equal(np.concatenate([b[0].numpy() for b in data.validation]), x[70:])
    clock = EpochClock()
    train = make_dataset(data.train, 10, data.shuffles_train(True), clock=clock)
    epoch1, epoch2 = ([b[0].numpy()[0, 0] for b in read_epoch(train, clock, epoch)] for epoch in range(2))
    assert sorted(epoch1) == sorted(epoch2) == sorted(x[:70:10, 0]) and epoch1 != epoch2  # reshuffled, never mixed
    again = load(write_config, changes)
    # The order is a function of the epoch alone: the same seed and epoch give the same batches.
    assert [b[0].numpy()[0, 0] for b in make_dataset(again.train, 10, True, clock=EpochClock(0))] == epoch1


def test_python_source_errors(write_config) -> None:
    with pytest.raises(ConfigError, match="returned str"):
        load(write_config, {"data": {"source": "python", "function": "helpers_custom:not_data", **PY}})
    with pytest.raises(ConfigError, match="cannot import module"):
        load(write_config, {"data": {"source": "python", "function": "nowhere_xyz:f", **PY}})


def test_nonfinite_input_is_refused_with_index(write_config, tmp_path: Path) -> None:
    x = np.ones((10, 3), np.float32)
    x[4, 2] = np.nan
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(10) % 2)
    changes: dict[str, Any] = {"data": {"source": "npz", "path": "d.npz", **PY}, "train": {"validation_split": None, "stratify": False}}
    with pytest.raises(ConfigError, match=r"x_train holds NaN or inf at index \(4, 2\)"):
        load(write_config, changes)
    changes["data"]["allow_nonfinite"] = True
    assert np.isnan(load(write_config, changes).train.x[4, 2])


KERAS = {"source": "keras", **PY}


def test_keras_dataset_missing_offline(write_config, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERASRUN_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailableError) as info:
        load(write_config, {"data": {**KERAS, "name": "cifar10"}})
    problem = info.value.problems[0]
    assert problem.key == "data.name" and "not available offline" in problem.message and "cifar10.npz" in (problem.hint or "")
    assert info.value.exit_code == 2


def test_unknown_keras_dataset_suggests(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load(write_config, {"data": {**KERAS, "name": "mnsit"}})
    assert "did you mean `mnist`" in (info.value.problems[0].hint or "")


def test_keras_raw_idx_files(write_config, tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()

    def write_idx(name: str, array: np.ndarray) -> None:
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        with gzip.open(folder / name, "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (6, 28, 28)), np.arange(6) % 3
    write_idx("train-images-idx3-ubyte.gz", images)
    write_idx("train-labels-idx1-ubyte.gz", labels)
    write_idx("t10k-images-idx3-ubyte.gz", images[:2])
    write_idx("t10k-labels-idx1-ubyte.gz", labels[:2])
    data = load(
        write_config,
        {"data": {**KERAS, "name": "fashion_mnist", "dir": str(tmp_path)}, "train": {"validation_split": None, "stratify": False}},
    )
    assert np.array_equal(data.train.x, images) and np.array_equal(data.test.y, labels[:2])


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="real Fashion-MNIST not present")
def test_real_fashion_mnist_from_data_dir(write_config) -> None:
    data = load(
        write_config,
        {"data": {**KERAS, "name": "fashion_mnist", "dir": str(SHARED_DATA)}, "train": {"validation_split": None, "stratify": False}},
    )
    assert data.train.x.shape == (60000, 28, 28) and data.test.x.shape == (10000, 28, 28)
    assert np.bincount(data.train.y).tolist() == [6000] * 10


@pytest.mark.skipif(not HAS_MNIST, reason="real MNIST not present")
def test_real_mnist_from_data_dir(write_config, mnist_env) -> None:
    data = load(write_config, {"data": {**KERAS, "name": "mnist"}, "train": {"validation_split": None, "stratify": False}})
    assert data.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(data.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def read_epoch(dataset: Any, clock: EpochClock, epoch: int) -> list[Any]:
    """The batches a pipeline gives in `epoch` (as the trainer's epoch callback sets it before reading)."""
    clock.set(epoch)
    return list(dataset)


def test_dataset_batches_shuffles_with_seed_and_covers_everything() -> None:
    split = Split(np.arange(10, dtype=np.float32).reshape(10, 1), np.arange(10), np.ones(10, np.float32))
    first = [b[1].numpy().tolist() for b in make_dataset(split, 4, True, seed=3)]
    again = [b[1].numpy().tolist() for b in make_dataset(split, 4, True, seed=3)]
    assert first == again and [len(b) for b in first] == [4, 4, 2]
    flat = [i for batch in first for i in batch]
    assert sorted(flat) == list(range(10)) and flat != list(range(10))
    ordered = [b[1].numpy().tolist() for b in make_dataset(split, 4, False, seed=3)]
    assert [i for batch in ordered for i in batch] == list(range(10))
    clock = EpochClock()
    dataset = make_dataset(split, 4, True, seed=3, clock=clock)
    epoch1, epoch2, back_to_1 = ([b[1].numpy().tolist() for b in read_epoch(dataset, clock, epoch)] for epoch in (0, 1, 0))
    assert epoch1 == first and epoch2 != epoch1  # reshuffled every epoch
    assert back_to_1 == epoch1  # the order is a function of (seed, epoch), not of how often the data was read


def test_steps_per_epoch_streams_passes_from_the_epochs_first_batch() -> None:
    split = Split(np.arange(10, dtype=np.float32).reshape(10, 1), np.arange(10))
    clock = EpochClock()
    passes = [make_dataset(split, 4, True, seed=3, clock=EpochClock(p)) for p in range(3)]
    flat = [b[1].numpy().tolist() for p in passes for b in p]  # pass 0, 1, 2: 3 batches each
    stream = make_dataset(split, 4, True, seed=3, clock=clock, steps_per_epoch=2)
    assert [b[1].numpy().tolist() for b in stream.take(7)] == flat[:7]  # epochs continue across passes
    clock.set(2)  # a run resumed at epoch 2 starts at global batch 4 (pass 1, its second batch)
    assert [b[1].numpy().tolist() for b in stream.take(3)] == flat[4:7]


def test_large_arrays_are_shared_with_tensorflow_not_copied() -> None:
    array = empty_aligned((300, 1024), np.float32)  # 1.2 MB: above the sharing threshold
    array[...] = np.arange(array.size, dtype=np.float32).reshape(array.shape)
    tensor = share_with_tensorflow(array)
    array[0, 0] = -1.0  # kerasrun never does this; here it proves the tensor reads the array's own memory
    assert float(tensor[0, 0]) == -1.0 and float(tensor[299, 1023]) == array.size - 1


def read_only(array: np.ndarray) -> np.ndarray:
    """The array, no longer writeable."""
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "make",
    [
        lambda base: base[:, 1:],  # not contiguous
        lambda base: np.frombuffer(base.tobytes() + b"\0" * 4, np.uint8)[4:].view(np.float32).reshape(base.shape),  # unaligned
        lambda base: read_only(cast_aligned(base, base.dtype)),  # aligned, but NumPy refuses to export it
        lambda base: base.astype(">f4"),  # big-endian: DLPack has no such type
        lambda base: base[:10],  # small: TensorFlow's own copy
        lambda base: base > 0.5,  # bool: TensorFlow's own copy
    ],
)
def test_any_array_reaches_tensorflow_with_its_values(make) -> None:
    base = np.random.default_rng(0).random((600, 512)).astype(np.float32)
    array = make(base)
    tensor = share_with_tensorflow(array)
    assert np.array_equal(tensor.numpy(), array)
    assert np.array_equal(tensor[5:9].numpy(), array[5:9])  # kernels that need aligned memory work too


def test_scale_and_cast_match_numpy_and_are_aligned() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    doubles = np.random.default_rng(1).random((7, 3))
    for got, want in [
        (scale_aligned(pixels, np.float32(255.0)), pixels.astype(np.float32) / np.float32(255.0)),
        (scale_aligned(doubles, np.float32(3.0)), doubles / np.float32(3.0)),
        (cast_aligned(doubles, np.dtype("float16")), doubles.astype(np.float16)),
    ]:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()  # bit for bit
        assert got.ctypes.data % TENSOR_ALIGNMENT == 0 and got.flags.c_contiguous
    for dtype in ("str", "object"):  # not for TensorFlow to share, but cast exactly as NumPy does
        got, want = cast_aligned(doubles, np.dtype(dtype)), doubles.astype(np.dtype(dtype))
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_dataset_gathers_the_right_rows_from_shared_arrays() -> None:
    x = np.random.default_rng(2).random((2000, 200)).astype(np.float32)[:, 1:]  # 1.6 MB, needs an aligned copy
    weights = np.linspace(0, 1, 2000).astype(np.float32)
    split = Split(x, np.arange(2000), weights)
    seen = 0
    for xb, yb, wb in make_dataset(split, 256, True, seed=1):
        index = yb.numpy()
        assert np.array_equal(xb.numpy(), x[index]) and np.array_equal(wb.numpy(), weights[index])
        seen += len(index)
    assert seen == 2000


def test_python_generator_source_with_a_validation_split(write_config) -> None:
    changes = {
        "data": {"source": "python", "function": "helpers_custom:blob_batches", **PY},
        "train": {"validation_split": 0.2, "stratify": False},
    }
    data = load(write_config, changes)
    assert int(data.train.cardinality()) == 8 and int(data.validation.cardinality()) == 2
    from helpers_custom import two_blobs

    x, _ = two_blobs(50)
    assert np.array_equal(np.concatenate([b[0].numpy() for b in data.validation]), x[80:])
    assert sorted(np.concatenate([b[0].numpy() for b in data.train])[:, 0]) == sorted(x[:80, 0])


def test_csv_named_columns_for_several_inputs_and_outputs(write_config, tmp_path: Path) -> None:
    rows = ["a,b,c,score,kind"] + [f"{i},{i * 2},{i * 3},{i / 10},{'x' if i % 2 else 'y'}" for i in range(10)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    changes: dict[str, Any] = {
        "data": {
            "source": "csv",
            "path": "m.csv",
            "features": {"left": ["a", "b"], "right": ["c"]},
            "target": {"score_out": "score", "kind_out": "kind"},
            "generator": None,
            "means": None,
            "cov": None,
            "samples_per_class": None,
            "test_fraction": None,
        },
        "train": {"validation_split": None, "stratify": False},
        "compile": {"loss": ["mse", "sparse_categorical_crossentropy"], "metrics": []},
        "model": {  # named as the data's columns name them: validate checks that
            "inputs": {"left": [2], "right": [1]},
            "layers": [
                {"Concatenate": {"name": "both"}, "inputs": ["left", "right"]},
                {"Dense": {"units": 1, "name": "score_out"}},
                {"Dense": {"units": 2, "activation": "softmax", "name": "kind_out"}, "inputs": "both"},
            ],
            "outputs": ["score_out", "kind_out"],
        },
    }
    data = load(write_config, changes)
    assert data.train.x["left"].shape == (10, 2) and data.train.x["right"].shape == (10, 1)
    assert data.train.y["score_out"].dtype == np.float32 and set(data.train.y["kind_out"]) == {0, 1}
    changes["data"]["features"] = {"left": ["a", "bb"]}
    with pytest.raises(ConfigError) as info:
        load(write_config, changes)
    assert info.value.problems[0].key == "data.features.left" and "did you mean `b`" in (info.value.problems[0].hint or "")


def test_tf_data_batches_reshuffle_with_seed_zero() -> None:
    # TensorFlow compares (global seed, op seed) with == (0, 0), which failed on kerasrun's per-epoch tensor op seed.
    from kerasrun._tf import keras, tf
    from kerasrun.data.pipeline import reshuffle_batches

    keras.utils.set_random_seed(0)
    batches = tf.data.Dataset.range(10).batch(2)
    clock = EpochClock()
    orders = [[int(b.numpy()[0]) for b in reshuffle_batches(batches, clock)] for _ in range(2)]
    assert sorted(orders[0]) == [0, 2, 4, 6, 8] and orders[0] == orders[1]
