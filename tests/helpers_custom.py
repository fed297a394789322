"""Importable objects for tests of `module:name` paths (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf


class ScaledDense(keras.layers.Dense):
    """A Dense layer subclass with an extra constructor argument."""

    def __init__(self, units: int, scale: float = 1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.scale = scale


def half_mse(y_true, y_pred):
    """A plain (y_true, y_pred) loss function."""
    return 0.5 * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


class FailAtEpoch(keras.callbacks.Callback):
    """Raises at the start of a given epoch, to test a run that fails midway."""

    def __init__(self, epoch: int = 1):
        super().__init__()
        self.fail_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.fail_epoch:
            raise RuntimeError(f"boom at epoch {epoch}")


class InterruptAtEpoch(FailAtEpoch):
    """Raises KeyboardInterrupt at the start of a given epoch (Ctrl-C)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.fail_epoch:
            raise KeyboardInterrupt


class InterruptOnceAtEpoch(keras.callbacks.Callback):
    """Ctrl-C at the start of `epoch`, the first time only (it leaves `marker` behind): a restarted run goes through."""

    def __init__(self, epoch: int, marker: str) -> None:
        super().__init__()
        self.interrupt_epoch = epoch
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        import os

        if epoch == self.interrupt_epoch and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise KeyboardInterrupt


def two_blobs(n: int = 50):
    """Arrays (x, y) for the python data source."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (n, 2)), rng.normal(3, 1, (n, 2))]).astype("float32")
    y = np.repeat([0, 1], n)
    return x, y


def split_blobs(n: int = 50):
    """((x, y), (x_test, y_test)) for the python data source."""
    x, y = two_blobs(n)
    return (x[::2], y[::2]), (x[1::2], y[1::2])


def blob_dataset(n: int = 50):
    """A batched tf.data.Dataset of (x, y)."""
    import tensorflow as tf

    x, y = two_blobs(n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(10)


def not_data():
    """Returns something that is not data."""
    return "nope"


def step_wrong_signature(model, x):
    """A train.step with the wrong parameters."""
    return {}


def step_returns_list(model, x, y, sample_weight, training):
    """A train.step that returns something other than a mapping."""
    return [1.0]


def step_returns_vector(model, x, y, sample_weight, training):
    """A train.step whose value is not a scalar."""
    return {"loss": keras.ops.ones((3,))}


def step_with_tensor_branch(model, x, y, sample_weight, training):
    """A train.step with `if`/`for` on tensors: works only with AutoGraph, as inside a tf.function."""
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=training), sample_weight=sample_weight, training=training)
    if training:
        model.optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
    positives = tf.constant(0.0)
    for value in tf.reshape(x, [-1]):  # a loop over a tensor
        if value > 0:  # a branch on a tensor
            positives += 1.0
    return {"loss": loss, "positive_inputs": positives}


class BranchingStepper:
    """The same step as a bound method and as a callable object (import paths may name either)."""

    def step(self, model, x, y, sample_weight, training):
        """Delegates to step_with_tensor_branch."""
        return step_with_tensor_branch(model, x, y, sample_weight, training)

    __call__ = step


branching_partial = functools.partial(step_with_tensor_branch)
branching_method = BranchingStepper().step
branching_object = BranchingStepper()


def weighted_blobs(n: int = 60):
    """Blobs with a per-sample weight array, as a dict for the python source."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (n, 2)), rng.normal(3, 1, (n, 2)), rng.normal((0, 3), 1, (n, 2))]).astype("float32")
    y = np.repeat([0, 1, 2], n)
    order = rng.permutation(len(y))
    return {"x_train": x[order], "y_train": y[order], "sample_weight": rng.uniform(0.5, 2.0, len(y)).astype("float32")[order]}


class FailOnWorker(keras.callbacks.Callback):
    """Raises on one multi-worker task (read from TF_CONFIG), to test that a dead worker fails the launch."""

    def __init__(self, index: int = 1):
        super().__init__()
        self.index = index

    def on_epoch_begin(self, epoch, logs=None):
        import json
        import os

        if json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index") == self.index:
            raise RuntimeError(f"worker {self.index} gives up")


def misnamed_multi_io():
    """The seed's multi-IO data with one input and one output misnamed."""
    from kerasrun.examples.multi_io import seed_data

    data = seed_data(40, 8)
    data["x_train"]["image_input"] = data["x_train"].pop("img_input")
    data["y_train"]["class_out"] = data["y_train"].pop("class_output")
    return data


def weighted_dataset():
    """A batched tf.data.Dataset yielding (x, y, sample_weight), as in the seed."""
    import tensorflow as tf

    x, y = two_blobs(50)
    weights = np.where(y == 1, 2.0, 1.0).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(16)


def blob_batches(n: int = 50, batch: int = 10):
    """A Python generator of (x, y) batches, the same on every call."""
    x, y = two_blobs(n)
    for start in range(0, len(y), batch):
        yield x[start : start + batch], y[start : start + batch]


class PauseAtEpoch(keras.callbacks.Callback):
    """At the start of `epoch`, touch `marker` and sleep (up to a minute) so a test can signal or kill the process there.

    Once the marker exists it never pauses again, so the resumed run (and a reference run whose
    marker was made beforehand) goes straight through. A stop signal ends the pause (as a callback
    that works for long should): the run then checkpoints after the epoch's first training call.
    """

    def __init__(self, epoch: int, marker: str) -> None:
        super().__init__()
        self.pause_epoch = epoch
        self.marker = marker

    def on_epoch_begin(self, epoch, logs=None):
        import os
        import time

        if epoch != self.pause_epoch or os.path.exists(self.marker):
            return
        from kerasrun.train.signals import stop_requested

        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))
        for _ in range(600):
            if stop_requested():
                return
            time.sleep(0.1)


def touch_marker(path: str):
    """A python data source with a side effect: it leaves `path` behind (shows that code from a config ran)."""
    with open(path, "w") as f:
        f.write("ran")
    return two_blobs()


def interrupt_loading():
    """A python data source that is interrupted while loading (Ctrl-C before any run folder exists)."""
    raise KeyboardInterrupt


class ConfigErrorAtTrainBegin(keras.callbacks.Callback):
    """Raises a kerasrun ConfigError once training has begun (a config problem only training can find)."""

    def on_train_begin(self, logs=None):
        from kerasrun.errors import ConfigError

        raise ConfigError("a problem found while training")


class FillDiskAtTrainEnd(keras.callbacks.Callback):
    """Fills the file system of `path` when training ends, as a full disk would be."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        try:
            with open(self.path, "wb") as f:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
        except OSError:  # ENOSPC: the disk is full now
            pass


class InterruptOnce(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (Ctrl-C) once: at the start of `epoch`, or at the end of training; `marker` remembers it did."""

    def __init__(self, marker: str, epoch: int = -1) -> None:
        super().__init__()
        self.marker = marker
        self.interrupt_epoch = epoch  # -1: in on_train_end instead

    def interrupt(self) -> None:
        import os

        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise KeyboardInterrupt

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.interrupt_epoch:
            self.interrupt()

    def on_train_end(self, logs=None):
        if self.interrupt_epoch == -1:
            self.interrupt()


class CountingCallback(keras.callbacks.Callback):
    """A callback of the user's with state, kept through a resume by get_state/set_state."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs_seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_seen += 1
        logs["epochs_seen"] = float(self.epochs_seen)  # into history.json: a resumed run must count on

    def get_state(self):
        return {"epochs_seen": self.epochs_seen}

    def set_state(self, state):
        self.epochs_seen = state["epochs_seen"]


class RecordBatches(keras.callbacks.Callback):
    """Appends `epoch batch steps` to `path` at every on_train_batch_end: what a callback sees of the steps."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        with open(self.path, "a") as file:
            file.write(f"{self.epoch} {batch} {self.params.get('steps')}\n")


class OtherSignalAtEpoch(keras.callbacks.Callback):
    """Installs a harmless SIGUSR1 handler (as a Slurm pre-timeout hook would) and signals itself at `epoch`, then waits."""

    def __init__(self, epoch: int, seconds: float) -> None:
        super().__init__()
        self.signal_epoch = epoch
        self.seconds = seconds

    def on_epoch_begin(self, epoch, logs=None):
        import os
        import signal
        import time

        if epoch == self.signal_epoch:
            signal.signal(signal.SIGUSR1, lambda signum, frame: None)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(self.seconds)  # longer than the stop grace period: a watchdog misled by SIGUSR1 would end the process


class StuckAtEpoch(keras.callbacks.Callback):
    """At `epoch`, blocks SIGTERM (or `signal_name`) in the main thread and sleeps, like a main thread stuck inside a TensorFlow op."""

    def __init__(self, epoch: int, marker: str, signal_name: str = "SIGTERM") -> None:
        super().__init__()
        self.stuck_epoch = epoch
        self.marker = marker
        self.signal_name = signal_name

    def on_epoch_begin(self, epoch, logs=None):
        import signal
        import time

        if epoch == self.stuck_epoch:
            # The signal goes to another thread; Python can't act here.
            signal.pthread_sigmask(signal.SIG_BLOCK, [getattr(signal, self.signal_name)])
            open(self.marker, "w").close()
            time.sleep(120)


def ragged_lists():
    """A python source returning lists of different lengths: not arrays."""
    return [[1.0, 2.0], [3.0]], [0, 1]


def only_features():
    """A python source's dict without y_train."""
    x, _ = two_blobs()
    return {"x_train": x}


def no_batches():
    """A generator source that yields nothing."""
    yield from ()


def tuples_by_split():
    """{train: (x, y), test: (x, y)}: arrays per split."""
    x, y = two_blobs()
    return {"train": (x[::2], y[::2]), "test": (x[1::2], y[1::2])}


def sequence_model():
    """Tokens -> per-token classes: labels of shape (n, 10), logits of shape (n, 10, 5)."""
    inputs = keras.Input((10,), name="tokens")
    hidden = keras.layers.Embedding(20, 8)(inputs)
    return keras.Model(inputs, keras.layers.Dense(5, name="tags")(hidden))


def sequence_data():
    """Integer token sequences and a tag per token."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 20, size=(64, 10)), rng.integers(0, 5, size=(64, 10))


class LossWithoutTraining(keras.Model):
    """A model overriding compute_loss in the older signature, without `training` (Keras supports it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False):
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, y_pred))


def loss_without_training():
    """Factory for LossWithoutTraining."""
    return LossWithoutTraining()


def halve_every_epoch(epoch: int, learning_rate: float) -> float:
    """A LearningRateScheduler schedule, named by import path in a config: half the rate after each epoch."""
    return learning_rate if epoch == 0 else learning_rate / 2


def with_validation_arrays():
    """x_train/y_train with x_val/y_val: a validation set given as arrays."""
    x, y = two_blobs()
    return {"x_train": x[:60], "y_train": y[:60], "x_val": x[60:], "y_val": y[60:]}


def with_misspelled_key():
    """A dict whose validation key is misspelled: never silently dropped."""
    x, y = two_blobs()
    return {"x_train": x, "y_train": y, "x_vall": x, "y_val": y}


def keep_case(text):
    """A TextVectorization `standardize` named by import path in a config: strip punctuation only."""
    import tensorflow as tf

    return tf.strings.regex_replace(text, r"[^\w\s]", "")


def with_half_validation():
    """x_val without y_val: refused, not half used."""
    x, y = two_blobs()
    return {"x_train": x, "y_train": y, "x_val": x}


def word_pairs(n: int = 150):
    """Two words per sample (x_train/y_train, x_test/y_test) of three classes, for a model with a string input and StringLookup.

    Each class draws its words mostly from its own two, sometimes from any: learnable, but not at once.
    """
    rng = np.random.default_rng(5)
    words = np.array(["ant", "bee", "cat", "dog", "eel", "fox"])
    y = np.arange(n) % 3
    own = words[2 * y[:, None] + rng.integers(0, 2, size=(n, 2))]
    x = np.where(rng.random((n, 2)) < 0.3, words[rng.integers(0, 6, size=(n, 2))], own)
    return {"x_train": x[:120], "y_train": y[:120], "x_test": x[120:], "y_test": y[120:]}


class OwnTrainStep(keras.Model):
    """A subclassed model with its own train_step (Keras's "customizing what happens in fit" guide): only fit runs it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        self.step_runs.assign_add(1)
        return super().train_step(data)

    def build(self, input_shape):
        self.step_runs = self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="int64", name="step_runs")
        super().build(input_shape)


def own_train_step():
    """Factory for OwnTrainStep."""
    return OwnTrainStep()


def unadapted_lookup_model():
    """A factory as a script written without adapting would be: a one-hot IntegerLookup before a Dense (its width unknown)."""
    inputs = keras.Input((1,), name="ca", dtype="int64")
    encoded = keras.layers.IntegerLookup(output_mode="one_hot")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(encoded))


class SignalAtStep(keras.callbacks.Callback):
    """Sends this process SIGTERM after batch `batch` of `epoch` (the end of the call holding it) when KERASRUN_TEST_SIGNAL is set.

    The resumed run (and the reference run) goes straight through: the variable is not set there.
    """

    def __init__(self, epoch: int, batch: int, validation: bool = False) -> None:
        super().__init__()
        self.signal_epoch = epoch
        self.signal_batch = batch
        self.validation = validation  # signal during the epoch's validation instead (after its batch `batch`)
        self.epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        import os
        import signal

        # Keras reports each call's last batch: the first report at or after `batch` (the variable is dropped: once).
        if self.validation:
            return
        if self.epoch == self.signal_epoch and batch >= self.signal_batch and os.environ.pop("KERASRUN_TEST_SIGNAL", ""):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_test_batch_end(self, batch, logs=None):
        import os
        import signal

        if self.validation and self.epoch == self.signal_epoch and os.environ.pop("KERASRUN_TEST_SIGNAL", ""):
            os.kill(os.getpid(), signal.SIGTERM)


def step_with_two_logs(model, x, y, sample_weight, training):
    """A user step: the compiled loss, applied when training, and a second scalar to average (its running mean is metric state)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = model(x, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
    if training:
        model.optimizer.apply(tape.gradient(loss, model.trainable_weights), model.trainable_weights)
    return {"loss": loss, "top_probability": tf.reduce_mean(tf.reduce_max(y_pred, axis=-1))}


def unbuilt_subclassed_model(hidden: int = 8, classes: int = 3):
    """A subclassed model left unbuilt: its weights (and its compiled metrics) exist only after its first call."""
    from kerasrun.examples.subclassed import MySequential

    return MySequential(hidden, classes, name="unbuilt")
