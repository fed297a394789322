"""`output.tensorboard`: Keras's own TensorBoard callback, writing event files into `<run>/tensorboard/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kerasrun._tf import keras, tf
from kerasrun.config.schema import Config
from kerasrun.rundir.layout import TENSORBOARD_DIR


class TensorBoard(keras.callbacks.TensorBoard):
    """keras.callbacks.TensorBoard whose epoch scalars are always written.

    With an integer `update_freq`, Keras leaves a `tf.summary.record_if(batch % update_freq == 0)`
    context open between batches, and the epoch-end scalars fall under it: an epoch whose last batch
    number is not a multiple of update_freq loses its epoch_loss and epoch metrics (Keras 3.15).
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        with tf.summary.record_if(True):  # the innermost record_if decides
            super().on_epoch_end(epoch, logs)


def tensorboard_callback(config: Config, run_dir: Path) -> Any:
    """The TensorBoard callback for output.tensorboard (None when it is off)."""
    options = config.output.tensorboard
    if options is None:
        return None
    return TensorBoard(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), **options.model_dump())
