"""`output.tensorboard`: Keras's own TensorBoard callback, writing event files into `<run>/tensorboard/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kerasrun._tf import keras
from kerasrun.config import Config

LOG_DIR = "tensorboard"  # inside the run folder: train/ and validation/ event files, as Keras lays them out


def tensorboard_callback(config: Config, run_dir: Path) -> Any:
    """keras.callbacks.TensorBoard for output.tensorboard (None when it is off)."""
    options = config.output.tensorboard
    if options is None:
        return None
    return keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / LOG_DIR), **options.model_dump())
