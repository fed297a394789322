"""The seed's hand-written training loop ("사용자 정의 훈련, 평가 루프", after Keras's guide "Writing a training
loop from scratch"), as written: eager by default, or with its step functions in tf.function (`--function`).

One epoch of MLP-512 + Dropout on 50,000 MNIST images (batch 32, RMSprop) with validation on the first
10,000; prints one JSON line: {"fit_s": ..., "train_accuracy": ..., "val_accuracy": ...}.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf


def main() -> None:
    """Train one epoch the seed's way and time it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--function", action="store_true", help="compile the steps with tf.function")
    args = parser.parse_args()
    with np.load(Path(os.environ.get("KERASRUN_DATA_DIR", "../shared/data")) / "mnist.npz", allow_pickle=False) as f:
        x_train, y_train = f["x_train"], f["y_train"]
    x_train = np.reshape(x_train, (-1, 784)).astype("float32") / 255.0
    x_val, y_val = x_train[:10000], y_train[:10000]
    x_train, y_train = x_train[10000:], y_train[10000:]

    keras.utils.set_random_seed(42)
    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(512, activation="relu")(inputs)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)

    optimizer = keras.optimizers.RMSprop()
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    train_acc_metric = keras.metrics.SparseCategoricalAccuracy()
    val_acc_metric = keras.metrics.SparseCategoricalAccuracy()
    train_dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(1024).batch(32)
    val_dataset = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(32)

    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss_value = loss_fn(y, logits)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        train_acc_metric.update_state(y, logits)
        return loss_value

    def test_step(x, y):
        val_logits = model(x, training=False)
        val_acc_metric.update_state(y, val_logits)

    if args.function:
        train_step, test_step = tf.function(train_step), tf.function(test_step)

    start = time.perf_counter()
    for x_batch, y_batch in train_dataset:
        train_step(x_batch, y_batch)
    for x_batch, y_batch in val_dataset:
        test_step(x_batch, y_batch)
    fit_s = time.perf_counter() - start
    print(json.dumps({"fit_s": fit_s, "train_accuracy": float(train_acc_metric.result()), "val_accuracy": float(val_acc_metric.result())}))


if __name__ == "__main__":
    main()
