"""Device selection, done before TensorFlow initialises its devices."""

from __future__ import annotations

from kerasrun._tf import tf
from kerasrun.config import Config
from kerasrun.errors import ConfigError


def select_device(config: Config) -> str:
    """Make only the chosen device visible; return the TensorFlow device name used for training."""
    spec = config.runtime.device
    gpus = tf.config.list_physical_devices("GPU")
    visible = [d.name for d in tf.config.list_physical_devices()]
    if spec == "cpu" or (spec == "auto" and not gpus):
        set_visible_gpus([])
        return "/CPU:0"
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= len(gpus):
        what = "no GPU is visible" if not gpus else f"GPU {index} does not exist"
        raise ConfigError(config.problem(("runtime", "device"), f"{what}; visible devices: {', '.join(visible)}", "use device: cpu or auto"))
    set_visible_gpus([gpus[index]])
    try:
        tf.config.experimental.set_memory_growth(gpus[index], True)  # don't take all GPU memory up front
    except RuntimeError:
        pass
    return "/GPU:0"


def set_visible_gpus(gpus: list) -> None:
    """Restrict visible GPUs; a no-op when TensorFlow has already initialised (e.g. a second run in one process)."""
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError:
        pass
