"""`kerasrun export`: the artifact takes raw inputs (preprocessing inside) and gives exactly `kerasrun predict`'s outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import merge, only_run, train
from typer.testing import CliRunner

from kerasrun.cli import app

# MNIST-like: raw uint8 8x8 "images" that the config reshapes to 64 features and scales by 255.
IMAGES: dict[str, Any] = {
    "name": "images",
    "seed": 3,
    "data": {"source": "npz", "path": "images.npz", "x": "x", "y": "y", "preprocess": [{"reshape": [64]}, {"scale": 255}]},
    "model": {
        "inputs": {"pixels": [64]},
        "layers": [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 2, "activation": "softmax"}}],
    },
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
    "train": {"epochs": 2, "batch_size": 32},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A completed run of the image config, raw inputs it never saw, and `kerasrun predict`'s predictions for them."""
    folder = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (160, 8, 8)).astype(np.uint8)
    y = (x.reshape(160, -1).mean(axis=1) > 127.5).astype(np.int64)
    np.savez(folder / "images.npz", x=x, y=y, x_test=x[:32], y_test=y[:32])
    config = folder / "images.yaml"
    config.write_text(yaml.safe_dump(IMAGES, sort_keys=False))
    runner = CliRunner()
    assert train(runner, config, folder / "runs").exit_code == 0
    run = only_run(folder / "runs")
    raw = rng.integers(0, 256, (11, 8, 8)).astype(np.uint8)
    np.save(folder / "raw.npy", raw)
    result = runner.invoke(app, ["predict", str(run), "-i", str(folder / "raw.npy"), "-o", str(folder / "predicted.npy")])
    assert result.exit_code == 0, result.output
    return run, raw, np.load(folder / "predicted.npy")


def export(run: Path, *args: str) -> Path:
    """`kerasrun export RUN ARGS`; the artifact's path (from the command's own report)."""
    result = CliRunner().invoke(app, ["export", str(run), *args])
    assert result.exit_code == 0, result.output
    assert "with preprocessing: reshape [64]; scale 255.0" in result.output and "input (None, 8, 8) uint8" in result.output
    assert "checked on raw samples" in result.output
    return Path(result.output.split(" to ", 1)[1].split(": input", 1)[0])


def test_saved_model_takes_raw_inputs_and_gives_predict_outputs(trained) -> None:
    from kerasrun._tf import tf

    run, raw, predicted = trained
    path = export(run)
    assert path == run / "export" / "saved_model" and (path / "saved_model.pb").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(loaded.serve(tf.constant(raw)).numpy(), predicted, rtol=1e-5, atol=1e-6)
    signature = loaded.signatures["serving_default"]
    ((spec,),) = [tuple(signature.structured_input_signature[1].values())]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 8, 8]
    (output,) = signature(**{spec.name: tf.constant(raw)}).values()
    np.testing.assert_allclose(output.numpy(), predicted, rtol=1e-5, atol=1e-6)
    export(run)  # a second export replaces the first whole
    again = tf.saved_model.load(str(path))  # kept in a name: its functions need the object alive
    np.testing.assert_allclose(again.serve(tf.constant(raw)).numpy(), predicted, rtol=1e-5, atol=1e-6)


def test_tflite_takes_raw_inputs_and_gives_predict_outputs(trained, tmp_path: Path) -> None:
    from kerasrun.use.artifacts import run_tflite

    run, raw, predicted = trained
    path = export(run, "--format", "tflite", "-o", str(tmp_path / "served"))  # no suffix: written as named
    assert path == tmp_path / "served" and path.read_bytes()[4:8] == b"TFL3"
    np.testing.assert_allclose(run_tflite(path, raw), predicted, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="tf2onnx is not installed (the onnx extra)")
def test_onnx_takes_raw_inputs_and_gives_predict_outputs(trained) -> None:
    import onnxruntime

    run, raw, predicted = trained
    path = export(run, "--format", "onnx")
    assert path == run / "export" / "model.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (entry,) = session.get_inputs()
    assert entry.type == "tensor(uint8)" and entry.shape[1:] == [8, 8]
    np.testing.assert_allclose(session.run(None, {entry.name: raw})[0], predicted, rtol=1e-5, atol=1e-6)


def test_bad_format_and_wrong_target_exit_2_writing_nothing(trained, tmp_path: Path) -> None:
    run, _, _ = trained
    result = CliRunner().invoke(app, ["export", str(run), "--format", "pickle", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "'pickle' is not one of" in result.output
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file; a saved_model export is a folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_export_never_replaces_what_is_not_an_earlier_export(trained, tmp_path: Path) -> None:
    run, _, _ = trained
    work = tmp_path / "work"  # a user's working folder
    work.mkdir()
    (work / "notes.txt").write_text("important")
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer at all")
    (tmp_path / "model.onnx").write_text("also not onnx")
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    for args, message in [
        (["-o", str(work)], "holds other things than a SavedModel (notes.txt)"),
        (["-o", str(run)], "holds other things than a SavedModel (checkpoints, config.yaml, curves.png and "),  # the run folder itself
        (["-o", str(run / "checkpoints")], "holds other things than a SavedModel (epoch-"),
        (["--format", "tflite", "-o", str(tmp_path / "model.tflite")], "is a file that is not a TFLite model"),
        (["--format", "tflite", "-o", str(run / "model.keras")], "is a file that is not a TFLite model"),
        (["--format", "onnx", "-o", str(tmp_path / "model.onnx")], "is a file that is not an ONNX model"),
    ]:
        result = CliRunner().invoke(app, ["export", str(run), *args])
        assert result.exit_code == 2 and message in result.output and "an export replaces its target whole" in result.output, (
            args,
            result.output,
        )
    assert (work / "notes.txt").read_text() == "important" and sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    assert (tmp_path / "model.tflite").read_bytes() == b"not a flatbuffer at all"
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before  # the run folder untouched
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(run, "-o", str(empty)) == empty and (empty / "saved_model.pb").is_file()  # an empty folder is a new place
    assert export(run, "-o", str(empty)) == empty  # and an earlier export is replaced


def test_resume_says_which_exports_hold_the_model_from_before(runner, write_config, runs_dir) -> None:
    assert train(runner, write_config({"train": {"epochs": 1}}), runs_dir).exit_code == 0
    run = only_run(runs_dir)
    resumed = runner.invoke(app, ["resume", str(run), "--set", "train.epochs=2", "--progress", "none"])
    assert resumed.exit_code == 0 and "note: export" not in resumed.output, resumed.output  # nothing exported yet
    exported = runner.invoke(app, ["export", str(run)])
    assert exported.exit_code == 0, exported.output
    resumed = runner.invoke(app, ["resume", str(run), "--set", "train.epochs=3", "--progress", "none"])
    assert resumed.exit_code == 0, resumed.output
    assert "note: export/saved_model still holds the model from before this resume: run `kerasrun export` again" in resumed.output


def test_export_refuses_an_interrupted_run(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config({"train": {"callbacks": [{"helpers_custom:InterruptAtEpoch": {"epoch": 2}}]}}), runs_dir)
    assert result.exit_code == 130
    run = only_run(runs_dir)
    refused = runner.invoke(app, ["export", str(run)])
    assert refused.exit_code == 2 and "the run was interrupted after 2 epochs; only a completed run has its model" in refused.output
    assert not (run / "export").exists()


def test_export_refuses_an_edited_run_folder(trained, tmp_path: Path) -> None:
    import shutil

    run, _, _ = trained
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text() + "\n# edited\n")
    refused = CliRunner().invoke(app, ["export", str(copy)])
    assert refused.exit_code == 2 and "not trusted: its config.yaml was edited" in refused.output
    assert not (copy / "export").exists()
    assert json.loads((copy / "run.json").read_text())["status"] == "completed"


def test_float64_features_and_a_run_without_steps(tmp_path: Path, runner: CliRunner, write_config) -> None:
    """float64 raw features (as a CSV source gives) export to TFLite too; a run without steps exports its model as it is."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4, 2))
    y = (x.reshape(120, -1).mean(axis=1) > 0).astype(np.int64)
    np.savez(tmp_path / "images.npz", x=x, y=y, x_test=x[:24], y_test=y[:24])
    changes = {"data": {"preprocess": [{"reshape": [8]}, {"scale": 3.0}]}, "model": {"inputs": {"pixels": [8]}}}
    config = tmp_path / "f64.yaml"
    config.write_text(yaml.safe_dump(merge(IMAGES, changes), sort_keys=False))
    assert train(runner, config, tmp_path / "runs").exit_code == 0
    run = only_run(tmp_path / "runs")
    np.save(tmp_path / "raw.npy", x[:7])
    assert runner.invoke(app, ["predict", str(run), "-i", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "p.npy")]).exit_code == 0
    result = runner.invoke(app, ["export", str(run), "--format", "tflite"])
    assert result.exit_code == 0 and "input (None, 4, 2) float64" in result.output, result.output
    from kerasrun.use.artifacts import run_tflite

    np.testing.assert_allclose(run_tflite(run / "export" / "model.tflite", x[:7]), np.load(tmp_path / "p.npy"), rtol=1e-5, atol=1e-6)

    assert train(runner, write_config(), tmp_path / "tiny").exit_code == 0  # TINY: no preprocess steps
    tiny = only_run(tmp_path / "tiny")
    result = runner.invoke(app, ["export", str(tiny)])
    assert result.exit_code == 0 and "input (None, 2) float32" in result.output and "preprocessing" not in result.output
    assert "checked on raw samples" in result.output  # with seeded inputs of the model's own shape


def test_a_streamed_csv_run_exports_its_raw_rows(tmp_path: Path, runner: CliRunner) -> None:
    """A streamed CSV applies the steps inside its dataset: export reads raw rows from the same reader without them."""
    from kerasrun._tf import tf

    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 6)).round(4)
    lines = [",".join([*(f"f{i}" for i in range(6)), "label"])] + [",".join([*map(str, row), str(int(row.sum() > 0))]) for row in x]
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "streamed",
        "data": {
            "source": "csv",
            "path": "table.csv",
            "target": "label",
            "stream": True,
            "preprocess": [{"reshape": [3, 2]}, {"scale": 2.0}],
        },
        "model": {"inputs": {"x": [3, 2]}, "layers": [{"Flatten": {}}, {"Dense": {"units": 2, "activation": "softmax"}}]},
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
        "train": {"epochs": 1, "batch_size": 16},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert train(runner, tmp_path / "s.yaml", tmp_path / "runs").exit_code == 0
    run = only_run(tmp_path / "runs")
    result = runner.invoke(app, ["export", str(run)])
    assert result.exit_code == 0 and "input (None, 6) float32" in result.output, result.output
    raw = x[:5].astype(np.float32)
    np.save(tmp_path / "raw.npy", raw)
    assert runner.invoke(app, ["predict", str(run), "-i", str(tmp_path / "raw.npy"), "-o", str(tmp_path / "p.npy")]).exit_code == 0
    loaded = tf.saved_model.load(str(run / "export" / "saved_model"))
    np.testing.assert_allclose(loaded.serve(tf.constant(raw)).numpy(), np.load(tmp_path / "p.npy"), rtol=1e-5, atol=1e-6)


def test_onnx_without_tf2onnx_exits_2_naming_the_extra(trained) -> None:
    """A real import failure (a meta-path finder refusing tf2onnx), not a mock."""
    import os
    import subprocess
    import sys
    import textwrap

    from helpers import TESTS

    run, _, _ = trained
    blocked = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tf2onnx":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        sys.argv = ["kerasrun", *sys.argv[1:]]
        from kerasrun.cli import main
        main()
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    out = subprocess.run(
        [sys.executable, "-c", blocked, "export", str(run), "--format", "onnx", "-o", str(run.parent / "blocked.onnx")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert "--format: onnx needs the `tf2onnx` package" in out.stderr and "pip install 'kerasrun[onnx]'" in out.stderr
    assert not (run.parent / "blocked.onnx").exists()


# --------------------------------------------------------------------------- string inputs, several inputs and outputs

# A text-folder run: one `dtype: string` input, TextVectorization adapted inside the model.
TEXT: dict[str, Any] = {
    "name": "reviews",
    "seed": 3,
    "data": {"source": "text_folder", "path": "texts", "test_path": "texts"},
    "model": {
        "inputs": {"review": {"shape": [], "dtype": "string"}},
        "layers": [
            {"TextVectorization": {"max_tokens": 50, "output_sequence_length": 12}},
            {"Embedding": {"input_dim": 50, "output_dim": 4}},
            {"GlobalAveragePooling1D": {}},
            {"Dense": {"units": 2, "activation": "softmax"}},
        ],
    },
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
    "train": {"epochs": 1, "batch_size": 16},
}


def exported(result: Any) -> Path:
    """The artifact's path from `kerasrun export`'s report (Keras's folder readers may print lines before it)."""
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("exported "))
    return Path(line.split(" to ", 1)[1].split(": input", 1)[0])


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A completed text-folder run, raw texts it never saw (a NumPy str array) and `kerasrun predict`'s outputs for them."""
    import random

    folder = tmp_path_factory.mktemp("texts")
    rng = random.Random(0)
    words = {"neg": ["awful", "boring", "dull"], "pos": ["great", "lovely", "fun"]}
    for label, telling in words.items():
        (folder / "texts" / label).mkdir(parents=True)
        for i in range(20):
            text = " ".join(rng.choice(["the", "movie", "was", "a", *telling]) for _ in range(rng.randint(3, 10)))
            (folder / "texts" / label / f"{i:02d}.txt").write_text(text)
    (folder / "text.yaml").write_text(yaml.safe_dump(TEXT, sort_keys=False))
    runner = CliRunner()
    assert train(runner, folder / "text.yaml", folder / "runs").exit_code == 0
    run = only_run(folder / "runs")
    raw = np.array(["a great and lovely movie", "dull, boring: AWFUL", "", "words it never saw"])
    np.save(folder / "raw.npy", raw)
    result = runner.invoke(app, ["predict", str(run), "-i", str(folder / "raw.npy"), "-o", str(folder / "predicted.npy")])
    assert result.exit_code == 0 and "wrote predictions (4, 2)" in result.output, result.output
    return run, raw, np.load(folder / "predicted.npy")


def test_a_string_input_exports_as_a_saved_model(texts) -> None:
    from kerasrun._tf import tf

    run, raw, predicted = texts
    result = CliRunner().invoke(app, ["export", str(run)])
    path = exported(result)
    assert path == run / "export" / "saved_model" and "input (None,) string" in result.output
    assert "checked on raw samples" in result.output  # on the run's own training texts
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(loaded.serve(tf.constant(raw)).numpy(), predicted, rtol=1e-5, atol=1e-6)
    ((spec,),) = [tuple(loaded.signatures["serving_default"].structured_input_signature[1].values())]
    assert spec.dtype == tf.string and spec.name == "review"


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        (
            "tflite",
            "--format: tflite can't hold this model: TFLite's builtin ops have no RaggedTensorToTensor, StaticRegexReplace, StringLower,"
            " StringSplitV2 (TensorFlow Select ops would need the Flex delegate, which TensorFlow's TFLite interpreter lacks)",
        ),
        pytest.param(
            "onnx",
            "--format: onnx can't hold this model: tf2onnx has no ONNX op for LookupTableFindV2, StaticRegexReplace, StringSplitV2",
            marks=pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="tf2onnx is not installed (the onnx extra)"),
        ),
    ],
)
def test_a_format_that_cannot_hold_text_ops_exits_2_naming_them(texts, tmp_path: Path, fmt: str, message: str) -> None:
    run, _, _ = texts
    result = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "-o", str(tmp_path / "out" / "model")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "export a SavedModel (--format saved_model)" in result.output
    assert "Traceback" not in result.output and "loc(" not in result.output  # no converter graph dump
    assert list((tmp_path / "out").iterdir()) == []  # no artifact, no temp folder


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A completed run of configs/multi_io.yaml (two named inputs, two outputs), raw inputs and `kerasrun predict`'s outputs (.npz)."""
    from helpers import REPO

    folder = tmp_path_factory.mktemp("multi_io")
    runner = CliRunner()
    assert train(runner, REPO / "configs" / "multi_io.yaml", folder / "runs", "--set", "train.epochs=1").exit_code == 0
    run = only_run(folder / "runs")
    rng = np.random.default_rng(5)
    raw: dict[str, Any] = {"img_input": rng.random((6, 32, 32, 3), np.float32), "ts_input": rng.normal(size=(6, 9, 10)).astype(np.float32)}
    np.savez(folder / "raw.npz", **raw)
    result = runner.invoke(app, ["predict", str(run), "-i", str(folder / "raw.npz"), "-o", str(folder / "predicted.npz")])
    assert result.exit_code == 0 and "wrote predictions score_output (6, 1), class_output (6, 5)" in result.output, result.output
    with np.load(folder / "predicted.npz") as predicted:
        return run, raw, {name: predicted[name] for name in predicted}


def artifact_outputs(path: Path, fmt: str, raw: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The artifact's outputs for named raw inputs, through each format's own runtime, in the order it gives them."""
    from kerasrun._tf import tf

    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
        named = signature(**{name: tf.constant(array) for name, array in raw.items()})
        return [named[f"output_{i}"].numpy() for i in range(len(named))]
    if fmt == "tflite":
        from kerasrun.use.artifacts import tflite_outputs

        return tflite_outputs(path, raw)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sorted(entry.name for entry in session.get_inputs()) == sorted(raw)
    return list(session.run(None, raw))


@pytest.mark.parametrize(
    "fmt",
    [
        "saved_model",
        pytest.param("tflite", marks=pytest.mark.slow),
        pytest.param(
            "onnx",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed"),
                pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="tf2onnx is not installed (the onnx extra)"),
            ],
        ),
    ],
)
def test_two_named_inputs_and_two_outputs_export_to_every_format(multi_io, tmp_path: Path, fmt: str) -> None:
    run, raw, predicted = multi_io
    target = tmp_path / {"saved_model": "sm", "tflite": "m.tflite", "onnx": "m.onnx"}[fmt]
    result = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "-o", str(target)])
    assert exported(result) == target
    assert "inputs img_input (None, 32, 32, 3) float32, ts_input (None, None, 10) float32" in result.output
    assert "outputs in order: score_output (None, 1), class_output (None, 5)" in result.output
    assert "checked on raw samples" in result.output  # on the source's samples: ts_input has a free length
    score, classes = artifact_outputs(target, fmt, raw)
    np.testing.assert_allclose(score, predicted["score_output"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(classes, predicted["class_output"], rtol=1e-5, atol=1e-6)


def test_predict_with_named_inputs_and_outputs_refuses_what_does_not_fit(multi_io, tmp_path: Path) -> None:
    run, raw, predicted = multi_io
    runner = CliRunner()
    np.savez(tmp_path / "raw.npz", **raw)
    result = runner.invoke(app, ["predict", str(run), "-i", str(tmp_path / "raw.npz"), "-o", str(tmp_path / "p.npy")])
    assert (
        result.exit_code == 2
        and "--output: this model has 2 outputs (score_output, class_output); one .npy holds one array" in result.output
    )
    result = runner.invoke(app, ["predict", str(run), "-i", str(tmp_path / "raw.npz"), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    header, *rows = (tmp_path / "p.csv").read_text().splitlines()
    assert header == "score_output_0," + ",".join(f"class_output_{i}" for i in range(5)) and len(rows) == 6
    np.testing.assert_allclose(
        np.array([row.split(",") for row in rows], dtype=np.float64),
        np.concatenate([predicted["score_output"], predicted["class_output"]], axis=1),
        rtol=1e-6,
    )
    np.savez(tmp_path / "typo.npz", img_inputs=raw["img_input"])
    result = runner.invoke(app, ["predict", str(run), "-i", str(tmp_path / "typo.npz"), "-o", str(tmp_path / "q.npz")])
    assert result.exit_code == 2 and "2 problems found" in result.output, result.output
    assert "has no array `img_input` for the model's input `img_input` (it holds img_inputs)" in result.output
    assert "did you mean `img_inputs`?" in result.output and "has no array `ts_input`" in result.output
    np.save(tmp_path / "one.npy", raw["img_input"])
    result = runner.invoke(app, ["predict", str(run), "-i", str(tmp_path / "one.npy"), "-o", str(tmp_path / "q.npz")])
    assert result.exit_code == 2 and "this model has 2 inputs (img_input, ts_input); one .npy holds one array" in result.output
    assert not (tmp_path / "q.npz").exists()


def test_predict_on_a_string_input_refuses_numbers(texts, tmp_path: Path) -> None:
    run, _, _ = texts
    np.save(tmp_path / "numbers.npy", np.zeros(3))
    result = CliRunner().invoke(app, ["predict", str(run), "-i", str(tmp_path / "numbers.npy"), "-o", str(tmp_path / "p.npy")])
    assert result.exit_code == 2 and "--input: holds float64 values; the model's input takes text" in result.output, result.output
    assert not (tmp_path / "p.npy").exists()


def test_a_recurrent_loop_tflite_cannot_hold_is_exit_2(tmp_path: Path) -> None:
    """Keras 3's LSTM converts to TFLite only with Select ops (FlexTensorListReserve): the real converter's error becomes exit 2."""
    from kerasrun._tf import keras
    from kerasrun.use.artifacts import ExportUnavailableError, convert

    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    with pytest.raises(ExportUnavailableError) as refused:
        convert(model, "tflite", tmp_path / "model.tflite")
    assert refused.value.exit_code == 2 and "tflite can't hold this model" in str(refused.value)
    assert "tensor-list ops of its recurrent loop" in str(refused.value) or "TensorListReserve" in str(refused.value)
    assert not (tmp_path / "model.tflite").exists()
