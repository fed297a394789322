"""GPU throughput: kerasrun against the plain Keras script, in images/s, per precision, steps_per_execution tuned.

    python bench/gpu_bench.py [--epochs 2] [--spe 1 32 128] [--data-dir ../shared/data]

Two models: the seed CNN (configs/mnist_cnn.yaml, MNIST arrays) and a small residual CNN on an image folder
(Fashion-MNIST written as PNGs to a temporary folder at run time). Each is trained by `kerasrun train` and by an
equivalent plain Keras script, each in a fresh process, in float32, mixed_float16 and mixed_bfloat16
(kerasrun's `runtime.precision`; the script sets Keras's global dtype policy), for every steps_per_execution
candidate, kerasrun and the script alternating. images/s = training images × epochs / fit seconds (validation
included on both sides; kerasrun's fit seconds are run.json → timings.fit_s). Prints a Markdown table of the best
steps_per_execution per side and appends the full result to bench/results/gpu.jsonl. On a machine without a GPU it
says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "gpu.jsonl"
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

RESNET_CONFIG = """
name: gpu-bench-resnet
seed: 0
data:
  source: image_folder
  path: {images}/train
  test_path: {images}/test
  image_size: [28, 28]
  color_mode: grayscale
  preprocess: [{{scale: 255}}]
model:
  inputs: {{image: [28, 28, 1]}}
  layers:
    - {{Conv2D: {{filters: 32, kernel_size: 3, padding: same, activation: relu, name: stem}}}}
    - {{Conv2D: {{filters: 32, kernel_size: 3, padding: same, activation: relu, name: b1a}}}}
    - {{Conv2D: {{filters: 32, kernel_size: 3, padding: same, name: b1b}}}}
    - {{Add: {{name: r1}}, inputs: [stem, b1b]}}
    - {{Activation: {{activation: relu, name: r1a}}}}
    - {{Conv2D: {{filters: 64, kernel_size: 3, strides: 2, padding: same, activation: relu, name: b2a}}}}
    - {{Conv2D: {{filters: 64, kernel_size: 3, padding: same, name: b2b}}}}
    - {{Conv2D: {{filters: 64, kernel_size: 1, strides: 2, name: skip2}}, inputs: r1a}}
    - {{Add: {{name: r2}}, inputs: [skip2, b2b]}}
    - {{Activation: {{activation: relu, name: r2a}}}}
    - {{GlobalAveragePooling2D: {{name: pool}}}}
    - {{Dense: {{units: 10, activation: softmax, name: out}}}}
compile: {{optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}}
train: {{epochs: 2, batch_size: 128}}
output: {{save_model: false, checkpoint: off}}
"""

# The plain scripts: what a Keras user writes for the same experiments. Run as `python -c SCRIPT ARGS...`;
# each prints one JSON line with fit_s.
PLAIN_CNN = """
import json, sys, time
import keras, numpy as np
npz, precision, spe, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keras.mixed_precision.set_global_policy(precision)
keras.utils.set_random_seed(42)
with np.load(npz) as d:
    x, y, xt, yt = (d[k] for k in ("x_train", "y_train", "x_test", "y_test"))
x, xt = x.astype("float32"), xt.astype("float32")
L = keras.layers
model = keras.Sequential([keras.Input((28, 28)), L.Reshape((28, 28, 1)), L.Conv2D(16, 3, activation="relu"),
    L.Conv2D(16, 3, strides=2, activation="relu"), L.Conv2D(16, 3, strides=2, activation="relu"),
    L.Conv2D(16, 3, strides=2, activation="relu"), L.Flatten(), L.Dense(20, activation="relu"),
    L.Dense(10, activation="softmax", dtype="float32")])
model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"], steps_per_execution=spe)
start = time.perf_counter()
model.fit(x, y, batch_size=64, epochs=epochs, validation_data=(xt, yt), verbose=0)
print(json.dumps({"fit_s": time.perf_counter() - start, "images": len(x)}))
"""

PLAIN_RESNET = """
import json, sys, time
import keras
images, precision, spe, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keras.mixed_precision.set_global_policy(precision)
keras.utils.set_random_seed(0)
kw = dict(image_size=(28, 28), color_mode="grayscale", batch_size=128)
train = keras.utils.image_dataset_from_directory(images + "/train", seed=0, **kw)
test = keras.utils.image_dataset_from_directory(images + "/test", shuffle=False, **kw)
L = keras.layers
inp = keras.Input((28, 28, 1))
stem = L.Conv2D(32, 3, padding="same", activation="relu")(L.Rescaling(1 / 255)(inp))
b1 = L.Conv2D(32, 3, padding="same")(L.Conv2D(32, 3, padding="same", activation="relu")(stem))
r1 = L.Activation("relu")(L.Add()([stem, b1]))
b2 = L.Conv2D(64, 3, padding="same")(L.Conv2D(64, 3, strides=2, padding="same", activation="relu")(r1))
r2 = L.Activation("relu")(L.Add()([L.Conv2D(64, 1, strides=2)(r1), b2]))
out = L.Dense(10, activation="softmax", dtype="float32")(L.GlobalAveragePooling2D()(r2))
model = keras.Model(inp, out)
model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], steps_per_execution=spe)
start = time.perf_counter()
model.fit(train.prefetch(-1), epochs=epochs, validation_data=test, verbose=0)
print(json.dumps({"fit_s": time.perf_counter() - start, "images": 60000}))
"""


def gpus() -> list[Any]:
    """The GPUs TensorFlow sees."""
    import tensorflow as tf

    return list(tf.config.list_physical_devices("GPU"))


def read_idx(path: Path) -> Any:
    """A gzipped IDX file (Fashion-MNIST's format) as a uint8 array."""
    import numpy as np

    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_folder(data_dir: Path, root: Path) -> None:
    """Fashion-MNIST as root/{train,test}/<class>/<index>.png."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers_images import write_image_folder

    source = data_dir / "fashion-mnist"
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        write_image_folder(images, labels, root / split)


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command; stop the benchmark if it fails."""
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:4])} … failed ({out.returncode})\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out


def kerasrun_rate(config: Path, precision: str, spe: int, epochs: int, images: int, env: dict[str, str]) -> float:
    """kerasrun's training images/s (run.json → timings.fit_s)."""
    with tempfile.TemporaryDirectory(prefix="kerasrun-gpu-bench-") as folder:
        sets = [f"runtime.precision={precision}", f"compile.steps_per_execution={spe}", f"train.epochs={epochs}", "output.save_model=false"]
        cmd = [sys.executable, "-m", "kerasrun", "train", str(config), "--runs-dir", folder, "--progress", "none"]
        run([*cmd, *(arg for s in sets for arg in ("--set", s))], env)
        record = json.loads(next(Path(folder).rglob("run.json")).read_text())
    return images * epochs / float(record["timings"]["fit_s"])


def plain_rate(script: str, source: str, precision: str, spe: int, epochs: int, env: dict[str, str]) -> float:
    """The plain script's training images/s (its own timer around model.fit)."""
    out = run([sys.executable, "-c", script, source, precision, str(spe), str(epochs)], env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return int(result["images"]) * epochs / float(result["fit_s"])


def main() -> None:
    """Check for a GPU, then measure every model × precision × steps_per_execution and record the result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--spe", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    found = gpus()
    if not found:
        print("gpu_bench: no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty): nothing measured.")
        return
    env = {**os.environ, "KERASRUN_DATA_DIR": str(args.data_dir), "PYTHONPATH": str(REPO)}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kerasrun-gpu-images-") as folder:
        images = Path(folder) / "images"
        write_folder(args.data_dir, images)
        resnet = Path(folder) / "resnet.yaml"
        resnet.write_text(RESNET_CONFIG.format(images=images))
        models = {
            "seed CNN (MNIST arrays)": (REPO / "configs" / "mnist_cnn.yaml", PLAIN_CNN, str(args.data_dir / "mnist.npz")),
            "residual CNN (Fashion-MNIST PNG folder)": (resnet, PLAIN_RESNET, str(images)),
        }
        for model, (config, script, source) in models.items():
            for precision in PRECISIONS:
                ours: dict[int, float] = {}
                theirs: dict[int, float] = {}
                for i, spe in enumerate(args.spe):
                    # Alternate which side runs first, so neither always meets a warmer GPU.
                    if i % 2:
                        theirs[spe] = plain_rate(script, source, precision, spe, args.epochs, env)
                        ours[spe] = kerasrun_rate(config, precision, spe, args.epochs, 60_000, env)
                    else:
                        ours[spe] = kerasrun_rate(config, precision, spe, args.epochs, 60_000, env)
                        theirs[spe] = plain_rate(script, source, precision, spe, args.epochs, env)
                best_ours, best_theirs = max(ours, key=ours.__getitem__), max(theirs, key=theirs.__getitem__)
                rows.append(
                    {
                        "model": model,
                        "precision": precision,
                        "kerasrun": ours,
                        "plain": theirs,
                        "best": {"kerasrun": best_ours, "plain": best_theirs},
                    }
                )
                print(
                    f"| {model} | {precision} | {ours[best_ours]:,.0f} (spe {best_ours}) | {theirs[best_theirs]:,.0f} (spe {best_theirs}) "
                    f"| {ours[best_ours] / theirs[best_theirs]:.2f} |",
                    flush=True,
                )
    record = {
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "gpus": [g.name for g in found],
        "epochs": args.epochs,
        "rows": rows,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"recorded in {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
