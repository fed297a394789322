"""The seed experiment as a Keras user writes it, with Keras's defaults: the baseline kerasrun is timed against.

Prints one JSON line: {"fit_s": ..., "test_accuracy": ..., "test_loss": ...}.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    """Train and evaluate the 784-64-64-10 MLP exactly as the seed does."""
    path = Path(os.environ.get("KERASRUN_DATA_DIR", "../shared/data")) / "mnist.npz"
    with np.load(path, allow_pickle=False) as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    x_train = x_train.reshape(60000, 784).astype("float32") / 255
    x_test = x_test.reshape(10000, 784).astype("float32") / 255
    x_val, y_val = x_train[-10000:], y_train[-10000:]
    x_train, y_train = x_train[:-10000], y_train[:-10000]

    keras.utils.set_random_seed(42)
    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=3, validation_data=(x_val, y_val), verbose=0)
    fit_s = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print(json.dumps({"fit_s": fit_s, "test_accuracy": float(accuracy), "test_loss": float(loss)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
