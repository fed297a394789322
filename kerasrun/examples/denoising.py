"""A denoising autoencoder on scikit-learn's digits: an objective `model.fit` cannot express as a loss alone.

Each training step corrupts the *inputs* with fresh Gaussian noise and masks, and asks the model to
reconstruct the clean images; the targets are the inputs themselves. Used by
`configs/digits_denoising_custom_step.yaml` through `train.step` and `data.function`.

The `train.step` contract (see the README): kerasrun calls, inside its compiled loop,

    step(model, x, y, sample_weight, training) -> {name: scalar tensor, ...}

once per batch — `training=True` for training batches, where the step must compute gradients and
apply them itself with `model.optimizer`; `training=False` for validation batches, where it must not
change any weights. Every returned scalar is averaged over the epoch (weighted by batch size, as
Keras averages the loss) and recorded under its name in history.json, with `val_` for validation.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

NOISE_STDDEV = 0.3  # in units of the [0, 1] pixel scale
DROP_RATE = 0.2  # fraction of pixels zeroed
NOISE_SEED = 1234  # with the optimizer's step counter: new noise every step, the same on every run


def digits_autoencoder_data(
    test_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Digits scaled to [0, 1], each image its own target: ((x, x), (x_test, x_test))."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x = (load_digits().data / 16.0).astype("float32")
    x_train, x_test = train_test_split(x, test_size=test_fraction, random_state=seed)
    return (x_train, x_train), (x_test, x_test)


def corrupt(x: Any, model: keras.Model, training: bool) -> Any:
    """Gaussian noise plus randomly dropped pixels, clipped back to [0, 1].

    Stateless random ops seeded by the optimizer's step counter: no hidden RNG state, so a rerun of
    the same config (even in the same process) sees the same noise.
    """
    step = tf.cast(model.optimizer.iterations, tf.int64)
    seed = tf.stack([tf.constant(NOISE_SEED if training else NOISE_SEED + 1, tf.int64), step])
    noisy = x + NOISE_STDDEV * tf.random.stateless_normal(tf.shape(x), seed=seed)
    keep = tf.random.stateless_uniform(tf.shape(x), seed=seed + 1) >= DROP_RATE
    return tf.clip_by_value(tf.where(keep, noisy, tf.zeros_like(noisy)), 0.0, 1.0)


def denoising_step(model: keras.Model, x: Any, y: Any, sample_weight: Any, training: bool) -> dict[str, Any]:
    """Reconstruct clean targets from corrupted inputs; also report how well the clean input is reconstructed."""
    with tf.GradientTape() as tape:
        reconstruction = model(corrupt(x, model, training), training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=reconstruction, sample_weight=sample_weight, training=training)
    if training:
        gradients = tape.gradient(loss, model.trainable_weights)
        model.optimizer.apply(gradients, model.trainable_weights)
    clean_error = tf.reduce_mean(tf.square(model(x, training=False) - y))
    return {"loss": loss, "clean_mse": clean_error}
