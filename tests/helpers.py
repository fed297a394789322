"""What tests share: paths, the tiny experiment, and one way to train a config (in-process or in a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from kerasrun.cli import app

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
SHARED_DATA = Path(os.environ.get("KERASRUN_TEST_DATA", REPO.parent / "shared" / "data"))
HAS_MNIST = (SHARED_DATA / "mnist.npz").is_file()
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=f"real MNIST not found at {SHARED_DATA}/mnist.npz")

# A tiny, fast experiment: 3 Gaussian classes, 2 features, one hidden layer.
TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 7,
    "data": {
        "source": "synthetic",
        "generator": "blobs",
        "means": [[0, 0], [4, 0], [0, 4]],
        "cov": [[1, 0], [0, 1]],
        "samples_per_class": 100,
        "test_fraction": 0.2,
    },
    "model": {
        "inputs": {"x": [2]},
        "layers": [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}],
    },
    "compile": {
        "optimizer": {"Adam": {"learning_rate": 0.01}},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["sparse_categorical_accuracy"],
    },
    # The blobs come sorted by class, so a last-fraction split would validate on one class only.
    "train": {"epochs": 3, "batch_size": 16, "validation_split": 0.25, "stratify": True},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Merge `changes` into a copy of `base`, one level into each section (a None value deletes the key)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            for sub_key, sub_value in value.items():
                if sub_value is None:
                    out[key].pop(sub_key, None)
                else:
                    out[key][sub_key] = sub_value
        else:
            out[key] = value
    return out


def config_path(name: str) -> Path:
    """configs/<name>.yaml."""
    return REPO / "configs" / f"{name}.yaml"


def train(runner: CliRunner, config: Path | str, runs_dir: Path, *args: str, progress: str = "plain") -> Result:
    """`kerasrun train CONFIG --runs-dir RUNS_DIR` in-process (Typer's CliRunner); the CLI result."""
    return runner.invoke(app, ["train", str(config), "--runs-dir", str(runs_dir), "--progress", progress, *args])


def only_run(runs_dir: Path) -> Path:
    """The single run folder under runs_dir."""
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def kerasrun_process(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m kerasrun ARGS` in a real process, with tests/ importable (for helpers_custom)."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "kerasrun", *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def kerasrun_popen(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """`python -m kerasrun ARGS` started in a real process (stdout and stderr piped), with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "kerasrun", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    """Wait for a process; its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `path` exists (the process reached its pause), failing fast if the process ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the process ended before pausing: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear")
        time.sleep(0.05)


def write_tiny(folder: Path, changes: dict[str, Any] | None = None) -> Path:
    """The tiny config (with `changes` merged in) as folder/tiny.yaml."""
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, changes or {}), sort_keys=False))
    return path


HEART_COLUMNS = "age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,target"


def write_heart_csv(path: Path, rows: int = 303, seed: int = 0) -> Path:
    """A seeded stand-in for keras.io's heart.csv (no network here): its columns, ranges and kinds, a learnable target."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = [HEART_COLUMNS]
    for _ in range(rows):
        cp, ca, thal = int(rng.integers(0, 5)), int(rng.integers(0, 4)), str(rng.choice(["normal", "fixed", "reversible"]))
        age, thalach, oldpeak = int(rng.integers(29, 78)), int(rng.integers(71, 203)), round(float(rng.uniform(0, 6.2)), 1)
        target = int(cp >= 3 or thal == "reversible" or (ca > 1 and oldpeak > 2.0))  # learnable, about half the rows
        row: list[object] = [
            age,
            int(rng.integers(0, 2)),
            cp,
            int(rng.integers(94, 201)),
            int(rng.integers(126, 565)),
            int(rng.integers(0, 2)),
        ]
        row += [int(rng.integers(0, 3)), thalach, int(rng.integers(0, 2)), oldpeak, int(rng.integers(1, 4)), ca, thal, target]
        lines.append(",".join(str(value) for value in row))
    path.write_text("\n".join(lines) + "\n")
    return path


SIZES = [90, 60, 110, 40, 7]  # write_records' shards: uneven on purpose, so workers' shares differ in rows
SHARDED: dict[str, Any] = {  # a config over write_records' shards (in shards/ beside it)
    "name": "shards",
    "seed": 3,
    "data": {
        "source": "tfrecord",
        "files": "shards/part-*.tfrecord",
        "features": {"x": {"dtype": "float32", "shape": [2]}, "y": {"dtype": "int64", "shape": []}},
        "inputs": ["x"],
        "targets": ["y"],
        "test_fraction": 0.1,
        "parallel_files": 3,
    },
    "model": {"inputs": {"x": [2]}, "layers": [{"Dense": {"units": 3, "activation": "softmax"}}]},
    "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "train": {"epochs": 1, "batch_size": 16, "validation_split": 0.25},
}


def write_records(folder: Path, sizes: list[int] = SIZES) -> None:
    """Shards of (x, y) examples whose x[0] is the example's number in writing order (to tell rows apart), y a class of 3."""
    import numpy as np

    from kerasrun._tf import tf  # lazily: helpers is imported by the tests that check TensorFlow stays unloaded

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    for shard, size in enumerate(sizes):
        with tf.io.TFRecordWriter(str(folder / f"part-{shard}.tfrecord")) as writer:
            for _ in range(size):
                feature = {
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(number), rng.normal()])),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rng.integers(0, 3))])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
                number += 1


def skip_if_a_gpu_is_visible() -> None:
    """For tests of what happens without a GPU."""
    from kerasrun._tf import tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible: this test is about a machine without one")


def modules_loaded_by(code: str) -> set[str]:
    """The modules a snippet leaves in sys.modules, in a fresh interpreter (the snippet must succeed)."""
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())
