"""The `PublishRunFolder` callback: a run folder on a remote runs dir gets each epoch's files as soon as they are written."""

from __future__ import annotations

from typing import Any

from kerasrun._tf import keras
from kerasrun.rundir.remote import Mirror


class PublishRunFolder(keras.callbacks.Callback):
    """After every epoch (last among the callbacks: the checkpoint and history are written), publish the local mirror."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__()
        self.mirror = mirror

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        try:
            self.mirror.publish()
        except Exception as exc:  # a store out of reach must not end the training: the next epoch or the close sends it
            self.mirror.failures.append(f"epoch {epoch + 1}: {exc}")
