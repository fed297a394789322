"""Capture and restore a run's training state for checkpoints: everything that decides the next epoch, so a resumed run continues bit for bit.

A checkpoint is one `.npz` file (arrays only, read with `allow_pickle=False`: data, never code) written
atomically after an epoch: the model's variables (weights and Dropout's seed generator states), the
optimizer's (step count, learning rate, slots), Keras's global seed generator, Python's and NumPy's
global random states, the state of every stateful callback (EarlyStopping's wait/best/best weights,
ReduceLROnPlateau's cooldown, ModelCheckpoint's best value, ...), the epoch count and the history so
far. The order of the training data needs no state: it is a pure function of (seed, epoch) — see
`kerasrun.data.epochs`.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import keras
from kerasrun.errors import RunFailedError
from kerasrun.keras_private import KERAS_CALLBACK_STATE, global_seed_state
from kerasrun.rundir.checkpoints import FORMAT, TrainingState, variable_name
from kerasrun.rundir.io import write_text_atomic


def capture(variables: dict[str, list[Any]], callbacks: list[Any], history: dict[str, list[Any]], epoch: int) -> TrainingState:
    """Copy everything a checkpoint holds out of TensorFlow and the callbacks, into NumPy and JSON values."""
    state = TrainingState(epoch, json.loads(json.dumps(history)), meta={"format": FORMAT, "epoch": epoch})
    for group, items in variables.items():
        state.meta[group] = [variable_name(v) for v in items]
        for index, variable in enumerate(items):
            state.arrays[f"{group}/{index:05d}"] = np.asarray(variable.numpy())
    seeds = global_seed_state()
    if seeds is not None:
        state.arrays["keras_global_seed"] = np.asarray(seeds.numpy())
    state.meta["python_random"] = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    state.arrays["numpy_random"] = np.asarray(keys)
    state.meta["numpy_random"] = [kind, int(position), int(has_gauss), float(cached)]
    state.meta["callbacks"] = [capture_callback(cb, index, state.arrays) for index, cb in enumerate(callbacks)]
    return state


def restore_variables(variables: dict[str, list[Any]], state: TrainingState) -> None:
    """Assign the checkpoint's values to the model's and optimizer's variables, after checking they match."""
    for group, items in variables.items():
        saved = state.meta.get(group, [])
        names = [variable_name(v) for v in items]
        if len(saved) != len(names):
            raise RunFailedError(
                f"the checkpoint holds {len(saved)} {group} variables, the model has {len(names)}: was the config changed?"
            )
        for index, variable in enumerate(items):
            value = state.arrays[f"{group}/{index:05d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise RunFailedError(
                    f"checkpoint variable {saved[index]} has shape {value.shape}, the model's {names[index]} {tuple(variable.shape)}"
                )
            variable.assign(value)
    seeds = global_seed_state()
    if seeds is not None and "keras_global_seed" in state.arrays:
        seeds.assign(state.arrays["keras_global_seed"])
    version, internal, gauss = state.meta["python_random"]
    random.setstate((version, tuple(internal), gauss))
    kind, position, has_gauss, cached = state.meta["numpy_random"]
    np.random.set_state((kind, state.arrays["numpy_random"], position, has_gauss, cached))


def state_attributes(callback: Any) -> tuple[str, ...]:
    """The attributes of a Keras callback that change while it trains (none for callbacks without state)."""
    for name, attributes in KERAS_CALLBACK_STATE.items():
        if isinstance(callback, getattr(keras.callbacks, name)):
            return attributes
    return ()


def capture_callback(callback: Any, index: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A callback's state: its own `get_state()` (a callback of yours), or the attributes Keras's callbacks change."""
    if hasattr(callback, "get_state"):
        source = dict(callback.get_state())
    else:
        source = {name: getattr(callback, name, None) for name in state_attributes(callback)}
    values: dict[str, Any] = {}
    array_lists: dict[str, int] = {}
    for name, value in source.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, np.ndarray):
            arrays[f"callbacks/{index}/{name}"] = value
            array_lists[name] = -1  # a single array, not a list
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
            for j, item in enumerate(value):
                arrays[f"callbacks/{index}/{name}/{j:05d}"] = item
            array_lists[name] = len(value)
        else:
            values[name] = value  # a number, a string, None, or a list of them (JSON, with inf and NaN kept)
    return {"class": type(callback).__name__, "values": values, "arrays": array_lists}


def restore_callbacks(callbacks: list[Any], state: TrainingState) -> None:
    """Put each callback's saved state back: `set_state(dict)` when it has one, else the attributes it changes."""
    saved = state.meta.get("callbacks", [])
    if [s["class"] for s in saved] != [type(cb).__name__ for cb in callbacks]:
        raise RunFailedError("the checkpoint's callbacks differ from the config's: was train.callbacks changed?")
    for index, (callback, entry) in enumerate(zip(callbacks, saved, strict=True)):
        values = dict(entry["values"])
        for name, count in entry["arrays"].items():
            if count == -1:
                values[name] = state.arrays[f"callbacks/{index}/{name}"]
            else:
                values[name] = [state.arrays[f"callbacks/{index}/{name}/{j:05d}"] for j in range(count)]
        if hasattr(callback, "set_state"):
            callback.set_state(values)
            continue
        allowed = state_attributes(callback)
        for name, value in values.items():
            if name in allowed:  # a checkpoint file can set state, never a path or a setting
                setattr(callback, name, value)


class RestoreCallbackState(keras.callbacks.Callback):
    """On resume: after every callback has reset itself in on_train_begin, put back their checkpointed state."""

    def __init__(self, callbacks: list[Any], state: TrainingState) -> None:
        super().__init__()
        self.stateful = callbacks
        self.state = state

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        restore_callbacks(self.stateful, self.state)


def prepare_callbacks_for_resume(callbacks: list[Any], epoch: int) -> None:
    """Before training resumes at `epoch`: CSVLogger appends instead of starting its file afresh, without later rows."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.CSVLogger):
            callback.append = True
            trim_csv(Path(callback.filename), epoch, callback.sep)


def trim_csv(path: Path, epoch: int, sep: str) -> None:
    """Keep the header and the rows of epochs before `epoch` (rows written after the checkpoint are redone)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=sep))
    kept = rows[:1] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epoch]
    text = io.StringIO(newline="")
    csv.writer(text, delimiter=sep).writerows(kept)
    write_text_atomic(path, text.getvalue())
