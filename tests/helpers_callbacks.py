"""Callbacks of a user's, named by import path in test configs, whose state a checkpoint must keep (or cannot)."""

from __future__ import annotations

import random

import keras
import numpy as np
import tensorflow as tf


class PlainState(keras.callbacks.Callback):
    """A callback without get_state whose plain attributes are its state, of every kind a checkpoint holds.

    Each epoch it logs a number computed from all of it: a resumed run whose state came back with a
    wrong value or type (np.float32 as a Python float, a tuple as a list) writes another history.json.
    """

    def __init__(self, note: str = "plain.txt") -> None:
        super().__init__()
        self.note = note  # a setting (a path in the run folder): never changed, so never checkpointed
        self.seen = 0
        self.best: np.float32 | None = None
        self.losses: list[np.float32] = []
        self.trace: dict[object, object] = {"arrays": [], (0, "pair"): (1, 2.5), 3: None}
        self.rates: list[tf.Tensor] = []

    def on_epoch_end(self, epoch, logs=None):
        loss = np.float32(logs["loss"])
        self.seen += 1
        self.best = loss if self.best is None else min(self.best, loss)
        self.losses.append(loss)
        arrays = self.trace["arrays"]
        assert isinstance(arrays, list)
        arrays.append(np.array(epoch, dtype=np.int64))  # 0-d
        arrays.append(np.full((2, 3), loss, dtype=np.float16))
        self.trace[(0, "pair")] = (self.seen, float(loss))
        self.rates.append(tf.identity(self.model.optimizer.learning_rate))  # an eager tensor, a schedule's rate or a plain one
        assert isinstance(self.best, np.float32) and all(isinstance(x, np.float32) for x in self.losses)
        assert isinstance(self.trace[(0, "pair")], tuple) and all(tf.is_tensor(r) for r in self.rates)
        total = np.float32(0)
        for value in (*self.losses, self.best):
            total = total * np.float32(1.5) + value  # float32 arithmetic: a float64 stand-in gives other bits
        total += sum(float(a.sum()) for a in arrays) + sum(float(r) for r in self.rates) + self.seen
        logs["plain_state"] = float(total)


class KeepsAGenerator(keras.callbacks.Callback):
    """A callback holding state no checkpoint can: a random.Random as built, and an object made while training."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = random.Random(0)
        self.handle: object | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.rng.random()
        self.handle = object()
