"""The seed "Train and evaluate with Keras" as a Keras user writes it, with Keras's defaults.

This is the baseline kerasrun is timed against (bench/run_bench.py). NumPy arrays straight into
`model.fit`, Keras's default `steps_per_execution` (1); `--spe 32` is the same script hand-tuned with
`steps_per_execution=32`, as kerasrun's config has it. Data: $KERASRUN_DATA_DIR/mnist.npz (no network).

Prints one JSON line at the end: {"fit_s": ..., "test_accuracy": ..., "test_loss": ...}.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # before TensorFlow/Keras are imported

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np


def main() -> None:
    """Train and evaluate the 784-64-64-10 MLP as the seed does."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spe", type=int, default=1, help="steps_per_execution (default 1, Keras's default)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    keras.utils.set_random_seed(42)

    path = Path(os.environ.get("KERASRUN_DATA_DIR", "../shared/data")) / "mnist.npz"
    if not path.is_file():
        sys.exit(f"{path} not found: set KERASRUN_DATA_DIR to the folder holding mnist.npz")
    with np.load(path, allow_pickle=False) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]

    x_train = x_train.reshape(60000, 784).astype("float32") / 255
    x_test = x_test.reshape(10000, 784).astype("float32") / 255

    # Reserve 10,000 samples for validation, as the seed does.
    x_val = x_train[-10000:]
    y_val = y_train[-10000:]
    x_train = x_train[:-10000]
    y_train = y_train[:-10000]

    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)

    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        steps_per_execution=args.spe,
    )

    ends: list[float] = []  # when each epoch ended (validation included): the steady-state epoch time
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, validation_data=(x_val, y_val), verbose=0, callbacks=[record])
    fit_s = time.perf_counter() - start
    epoch_s = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]

    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(
        json.dumps({"fit_s": fit_s, "epoch_s": epoch_s, "test_accuracy": float(test_accuracy), "test_loss": float(test_loss)}), flush=True
    )


if __name__ == "__main__":
    main()
