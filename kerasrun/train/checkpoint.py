"""Checkpoints in the run folder: everything that decides the next epoch, so a resumed run continues bit for bit.

A checkpoint is one `.npz` file (arrays only, read with `allow_pickle=False`: data, never code) written
atomically after an epoch: the model's variables (weights and Dropout's seed generator states), the
optimizer's (step count, learning rate, slots), Keras's global seed generator, Python's and NumPy's
global random states, the state of every stateful callback (EarlyStopping's wait/best/best weights,
ReduceLROnPlateau's cooldown, ModelCheckpoint's best value, ...), the epoch count and the history so
far. The order of the training data needs no state: it is a pure function of (seed, epoch) — see
`kerasrun.data.epochs`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import keras
from kerasrun.errors import RunFailedError
from kerasrun.keras_private import global_seed_state
from kerasrun.rundir.record import write_atomic, write_text_atomic
from kerasrun.train.callbacks.records import is_finite

CHECKPOINT_DIR = "checkpoints"
FILE_PATTERN = re.compile(r"^epoch-(\d+)\.npz$")
META_KEY = "meta.json"  # the JSON half of a checkpoint, stored as bytes inside the .npz
FORMAT = 1
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


@dataclass
class TrainingState:
    """A snapshot taken at the end of an epoch: `epoch` epochs are complete."""

    epoch: int
    history: dict[str, list[Any]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- capture and restore


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


def variable_name(variable: Any) -> str:
    """A variable's path in the model (`dense/kernel`), to check a checkpoint against the model it is restored into."""
    return str(getattr(variable, "path", None) or getattr(variable, "name", "?"))


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


# --------------------------------------------------------------------------- files


def checkpoint_dir(run_dir: Path) -> Path:
    """The run folder's checkpoints/ folder."""
    return Path(run_dir) / CHECKPOINT_DIR


def write(run_dir: Path, state: TrainingState, keep: int) -> Path:
    """Write `epoch-NNNN.npz` atomically (temp file, fsync, rename), then drop all but the `keep` latest."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(exist_ok=True)
    path = folder / f"epoch-{state.epoch:04d}.npz"
    meta = dict(state.meta, history=state.history)
    payload = dict(state.arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)  # JSON keeps inf (EarlyStopping's best)
    write_atomic(path, lambda f: np.savez(f, allow_pickle=False, **payload))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint files, oldest first (a temp file of an interrupted write never matches)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := FILE_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read(path: Path) -> TrainingState:
    """Load a checkpoint file (arrays only: never unpickles)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    if meta.get("format") != FORMAT:
        raise RunFailedError(f"{path} is a checkpoint format this kerasrun cannot read ({meta.get('format')})")
    return TrainingState(int(meta["epoch"]), meta.pop("history"), arrays, meta)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete temp files of writes a killed process never finished (`.model.tmp*`, `.*.tmp`); return them."""
    run_dir = Path(run_dir)
    candidates = [*run_dir.glob(".*.tmp"), *run_dir.glob(".model.tmp*"), *checkpoint_dir(run_dir).glob(".*.tmp")]
    for path in candidates:
        with contextlib.suppress(OSError):
            path.unlink()
    return candidates


# --------------------------------------------------------------------------- the callback


class Checkpointer(keras.callbacks.Callback):
    """Writes a checkpoint every `every` epochs, at the last one and when training stops early.

    It must come after every callback whose state it saves (they update it in on_epoch_end) and after
    the history writer.
    """

    def __init__(  # `variables` is called at each capture: a subclassed model's optimizer exists only after the first step
        self,
        run_dir: Path,
        variables: Callable[[], dict[str, list[Any]]],
        callbacks: list[Any],
        history: Any,
        every: int,
        keep: int,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.variables = variables
        self.stateful = callbacks
        self.history_writer = history
        self.every = every
        self.keep = keep
        self.pending: TrainingState | None = None  # captured at the last epoch end but not yet written
        self.last_written: int | None = None
        self.seconds = 0.0  # spent capturing and writing, for run.json's timings (checkpoint_s)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not is_finite((logs or {}).get("loss", 0.0)):
            return  # a diverged epoch is not worth resuming from
        start = time.perf_counter()
        self.pending = capture(self.variables(), self.stateful, self.history_writer.history, epoch + 1)
        self.pending.meta["stopped"] = bool(self.model.stop_training)  # e.g. EarlyStopping: no epochs are left
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every == 0 or last or self.model.stop_training:
            self.flush()
        self.seconds += time.perf_counter() - start

    def flush(self) -> Path | None:
        """Write the captured state if it hasn't been (also called when the run is interrupted)."""
        if self.pending is None:
            return None
        path = write(self.run_dir, self.pending, self.keep)
        self.last_written, self.pending = self.pending.epoch, None
        return path
