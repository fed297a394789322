"""Every use of Keras's private API, in one place, each behind a version guard with a public fallback.

kerasrun is tested with the Keras minor versions in TESTED (pyproject.toml bounds `keras` to them).
On any other version these helpers take their fallback instead of reaching into Keras's internals:
the numbers stay the same, only a speed-up or a checkpointed detail is lost, as each docstring says.
"""

from __future__ import annotations

from typing import Any

from kerasrun._tf import keras

TESTED = {(3, 15)}  # Keras minor versions whose private API below was read and tested


def keras_minor(version: str | None = None) -> tuple[int, int]:
    """(major, minor) of a Keras version string, e.g. (3, 15) for "3.15.1"."""
    parts = (version or keras.__version__).split(".")
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def private_api_ok() -> bool:
    """True on a Keras version whose private API kerasrun was tested with."""
    return keras_minor() in TESTED


def symbolic_build(model: Any, element_spec: Any) -> bool:
    """Create a built model's optimizer, loss and metric variables from the data's element spec; False if skipped.

    `Trainer._symbolic_build` is what Keras itself runs under a tf.distribute strategy. Fallback:
    nothing — Keras creates the variables while tracing the first step (same values, zeros), and a
    tf.function that created variables is traced once more (~0.3 s here).
    """
    build = getattr(model, "_symbolic_build", None)
    layers = getattr(model, "_flatten_layers", None)
    if not private_api_ok() or build is None or layers is None or element_spec is None:
        return False
    if not model.built or not all(layer.built for layer in layers()):
        return False  # a subclassed model builds its weights on the first call: keep Keras's lazy path
    build(data_batch=element_spec)
    return True


def global_seed_state() -> Any:
    """The state variable of Keras's global SeedGenerator (keras.random calls without a seed), or None.

    Keras keeps it in its private global state. Fallback: None — checkpoints then don't hold it, and a
    resumed run's unseeded keras.random calls start that generator afresh.
    """
    if not private_api_ok():
        return None
    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return None
    generator = global_state.get_global_attribute("global_seed_generator")
    return getattr(generator, "state", None)


# What Keras's stateful callbacks change while training (read in keras/src/callbacks of Keras 3.15).
# Only these are saved: their settings come from the config again, and restoring settings would be
# wrong (monitor callbacks flip min_delta's sign when they first pick their comparison) or unsafe
# (ModelCheckpoint's filepath would point a moved or handed-over run folder elsewhere).
KERAS_CALLBACK_STATE: dict[str, tuple[str, ...]] = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_weights", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": ("best", "_batches_seen_since_last_saving", "_last_batch_seen", "_current_epoch"),
    "TensorBoard": ("_global_train_batch", "_global_test_batch"),
}


def image_loader(image_size: tuple[int, int], channels: int, interpolation: str, crop: bool, pad: bool) -> Any:
    """Keras's per-file image decoder of image_dataset_from_directory, as a function of a path tensor.

    A streamed image folder reads its files in kerasrun's seeded order, which the public loader
    cannot take (it lists the files itself). `_load_image_tf` is what that loader maps over its
    paths. Fallback: the same TensorFlow ops written out (read, decode, resize, crop or pad), the
    same numbers on the versions read.
    """
    from kerasrun._tf import tf

    if private_api_ok():
        try:
            from keras.src.utils.image_dataset_utils import _load_image_tf
        except ImportError:
            pass
        else:
            return lambda path: _load_image_tf(path, image_size, channels, interpolation, "channels_last", crop, pad)

    def load(path: Any) -> Any:
        image = tf.image.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        if crop:
            image = keras.preprocessing.image.smart_resize(image, image_size, interpolation=interpolation)
        elif pad:
            image = tf.image.resize_with_pad(image, image_size[0], image_size[1], method=interpolation)
        else:
            image = tf.image.resize(image, image_size, method=interpolation)
        image.set_shape((*image_size, channels))
        return image

    return load


def monitor_direction_problem(callback: Any, model: Any) -> str | None:
    """Why a monitoring callback with `mode: auto` can't tell whether its metric should go up or down (Keras fails at the
    first epoch's end), or None; None too where this Keras's private `_set_monitor_op` is not the one read."""
    if not private_api_ok() or not hasattr(callback, "_set_monitor_op"):
        return None
    callback.set_model(model)
    try:
        callback._set_monitor_op()  # reads the built metrics' directions; on a copy of the callback that never trains
    except ValueError as exc:
        return str(exc).split(". Pass", 1)[0]
    return None


def compute_loss(model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any, training: bool) -> Any:
    """The model's loss as Keras's own train_step computes it: `Trainer._compute_loss` (private) passes `training`
    only to a `compute_loss` override that takes it (the argument came in Keras 3.3; older overrides lack it).

    Fallback on an untested Keras: the same check on the override's signature, done here.
    """
    if private_api_ok() and hasattr(model, "_compute_loss"):
        return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
    import inspect

    if "training" in inspect.signature(model.compute_loss).parameters:
        return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
