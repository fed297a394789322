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
import types
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import keras, tf
from kerasrun.errors import RunFailedError
from kerasrun.keras_private import KERAS_CALLBACK_STATE, global_seed_state
from kerasrun.rundir.checkpoints import FORMAT, TrainingState, variable_name
from kerasrun.rundir.io import write_text_atomic


def capture(
    variables: dict[str, list[Any]], callbacks: CallbackStates, history: dict[str, list[Any]], epoch: int, step: int = 0
) -> TrainingState:
    """Copy everything a checkpoint holds out of TensorFlow and the callbacks, into NumPy and JSON values (`step` > 0: mid-epoch)."""
    meta = {"format": FORMAT, "epoch": epoch, **({"step": step} if step else {})}
    state = TrainingState(epoch, json.loads(json.dumps(history)), meta=meta, step=step)
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
    state.meta["callbacks"] = callbacks.capture(state.arrays)
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


class Uncapturable(Exception):
    """A value a checkpoint cannot hold: neither None, a number, a string, an array, a tensor nor a list, tuple or dict of those."""


def encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """`value` as JSON, its arrays into `arrays` under keys that start with `key`; raises Uncapturable for anything else.

    JSON holds None, bool, int, float (inf and NaN too) and str as they are and lists as lists; every
    other value is a one-key object naming its type, so it is restored as the same type: a tuple, a
    dict (keys of any of these types), a NumPy array of any rank and dtype (0-d included), a NumPy
    scalar (np.float32 stays np.float32), an eager tensor or a variable (a learning rate read from the
    optimizer; a variable comes back as a Keras variable, or into the one the callback holds).
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(item, f"{key}/{i}", arrays) for i, item in enumerate(value)]
    if kind is tuple:
        return {"tuple": [encode(item, f"{key}/{i}", arrays) for i, item in enumerate(value)]}
    if kind is dict:
        return {"dict": [[encode(k, f"{key}/k{i}", arrays), encode(v, f"{key}/{i}", arrays)] for i, (k, v) in enumerate(value.items())]}
    if kind is np.ndarray or isinstance(value, np.generic):
        arrays[key] = held(value, f"a NumPy {kind.__name__} of Python objects")
        return {"array" if kind is np.ndarray else "scalar": key}
    if isinstance(value, (keras.Variable, tf.Variable)):
        arrays[key] = held(value.numpy(), "a variable of strings")
        return {"variable": [key, bool(value.trainable)]}
    if isinstance(value, tf.Tensor) and hasattr(value, "numpy"):  # eager only: a symbolic tensor has no value
        arrays[key] = held(value.numpy(), "a tensor of strings")
        return {"tensor": key}
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    raise Uncapturable(f"{'an' if name[0] in 'aeiou' else 'a'} {name}")


def held(value: Any, refusal: str) -> np.ndarray:
    """A copy of an array or scalar the .npz can hold (an array the callback changes in place later must not change the capture)."""
    copy = np.array(value)
    if copy.dtype.hasobject:  # np.savez would have to pickle it
        raise Uncapturable(refusal)
    return copy


def decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The value `encode` turned into `node`, as the same type."""
    if isinstance(node, list):
        return [decode(item, arrays) for item in node]
    if not isinstance(node, dict):
        return node
    ((tag, body),) = node.items()
    if tag == "tuple":
        return tuple(decode(item, arrays) for item in body)
    if tag == "dict":
        return {decode(k, arrays): decode(v, arrays) for k, v in body}
    if tag == "array":
        return arrays[body]
    if tag == "scalar":
        return arrays[body][()]  # a 0-d array's item as a NumPy scalar of its dtype
    if tag == "tensor":
        return tf.constant(arrays[body])
    if tag == "variable":
        name, trainable = body
        return keras.Variable(arrays[name], trainable=trainable)
    raise RunFailedError(f"the checkpoint holds a callback value of an unknown kind `{tag}`: was it written by a newer kerasrun?")


def fingerprint(value: Any) -> tuple[str, tuple[tuple[str, str, tuple[int, ...], bytes], ...]] | None:
    """A value's encoding, comparable with `==` (arrays by dtype, shape and bytes); None if it cannot be captured."""
    arrays: dict[str, np.ndarray] = {}
    try:
        text = json.dumps(encode(value, "", arrays))
    except Uncapturable:
        return None
    return text, tuple((k, a.dtype.str, a.shape, a.tobytes()) for k, a in sorted(arrays.items()))


def is_code(value: Any) -> bool:
    """Functions, classes, modules and other callables (a schedule, a model): settings the config builds again, not state."""
    return callable(value) or isinstance(value, types.ModuleType)


BASE_ATTRIBUTES = frozenset(vars(keras.callbacks.Callback()))  # params and the model, which Keras sets on every callback


class CallbackStates:
    """The state of a run's callbacks between epochs: what each keeps, captured into checkpoints and restored on resume.

    - A callback with `get_state()` and `set_state(dict)`: what those give and take.
    - Keras's own stateful callbacks (and subclasses of them): the attributes in KERAS_CALLBACK_STATE;
      Keras's other callbacks keep none (CSVLogger's file is trimmed and appended to instead).
    - Any other callback: its plain attributes that training changed since the callback was built
      (what it was built with comes from the config again: a path stays the run folder's own even
      when the folder moved). Functions, classes and modules are settings, never state.

    A value `encode` cannot hold is left out of the checkpoint and named: at the start of the run
    (`notes`), and in the checkpoint, so `kerasrun resume` says what starts afresh.
    """

    def __init__(self, callbacks: list[Any]) -> None:
        self.callbacks = callbacks
        self.built = [self.baseline(cb) for cb in callbacks]

    @staticmethod
    def kind(callback: Any) -> str:
        """How a callback's state is read: "get_state", "keras" (a known attribute list) or "attributes"."""
        if hasattr(callback, "get_state"):
            return "get_state"
        if any(isinstance(callback, getattr(keras.callbacks, name)) for name in KERAS_CALLBACK_STATE):
            return "keras"
        if type(callback).__module__.split(".")[0] == "keras":
            return "keras"  # a Keras callback without state (TerminateOnNaN, LearningRateScheduler, CSVLogger, ...)
        return "attributes"

    def baseline(self, callback: Any) -> dict[str, Any]:
        """The fingerprints of a plain callback's attributes as it was built (nothing for the other kinds)."""
        if self.kind(callback) != "attributes":
            return {}
        return {name: fingerprint(value) for name, value in vars(callback).items() if self.plain(name, value)}

    @staticmethod
    def plain(name: str, value: Any) -> bool:
        """An attribute of a user callback that can be state: not Keras's own, not code."""
        return name not in BASE_ATTRIBUTES and not name.startswith("__") and not is_code(value)

    def source(self, index: int) -> dict[str, Any]:
        """The state callback `index` has now, by name."""
        callback = self.callbacks[index]
        kind = self.kind(callback)
        if kind == "get_state":
            return dict(callback.get_state())
        if kind == "keras":
            return {name: getattr(callback, name, None) for name in state_attributes(callback)}
        built = self.built[index]
        return {
            name: value
            for name, value in vars(callback).items()
            if self.plain(name, value) and (name not in built or built[name] is None or fingerprint(value) != built[name])
        }

    def capture(self, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Every callback's state as JSON entries for the checkpoint's meta, its arrays into `arrays`."""
        entries = []
        for index, callback in enumerate(self.callbacks):
            state: list[list[Any]] = []
            uncaptured: list[str] = []
            for name, value in self.source(index).items():
                key, before = f"callbacks/{index}/{len(state)}", set(arrays)
                try:
                    state.append([encode(name, f"{key}/name", arrays), encode(value, key, arrays)])
                except Uncapturable as exc:  # named in the checkpoint: `kerasrun resume` says it starts afresh
                    uncaptured.append(f"{name} ({exc})")
                    for partial in set(arrays) - before:  # arrays of a container whose later item failed
                        del arrays[partial]
            entries.append({"class": type(callback).__name__, "state": {"dict": state}, "uncaptured": uncaptured})
        return entries

    def notes(self) -> list[str]:
        """One line per callback holding values a checkpoint cannot, as it starts."""
        out = []
        for callback, built in zip(self.callbacks, self.built, strict=True):
            kind = self.kind(callback)
            if kind == "attributes":
                values = {name: value for name, value in vars(callback).items() if name in built and built[name] is None}
            elif kind == "get_state":
                try:  # before training a get_state may read what only training sets: then only the checkpoints can tell
                    values = dict(callback.get_state())
                except Exception:
                    continue
            else:
                continue
            bad = [f"{name} ({describe(value)})" for name, value in values.items() if fingerprint(value) is None]
            if bad:
                out.append(
                    f"callback {type(callback).__name__} keeps {', '.join(bad)}, which a checkpoint cannot hold: a resumed run "
                    "starts it afresh (give the callback get_state() and set_state(dict) returning and taking numbers, strings, "
                    "arrays and lists or dicts of them)"
                )
        return out

    def restore(self, state: TrainingState) -> None:
        """Put each callback's saved state back: `set_state(dict)` when it has one, else the attributes it keeps."""
        saved = state.meta.get("callbacks", [])
        if [s["class"] for s in saved] != [type(cb).__name__ for cb in self.callbacks]:
            raise RunFailedError("the checkpoint's callbacks differ from the config's: was train.callbacks changed?")
        for index, (callback, entry) in enumerate(zip(self.callbacks, saved, strict=True)):
            values = decode(entry["state"], state.arrays) if "state" in entry else legacy_values(entry, index, state)
            kind = self.kind(callback)
            if kind == "get_state":
                callback.set_state(values)
                continue
            allowed = state_attributes(callback) if kind == "keras" else None
            for name, value in values.items():
                # A checkpoint file sets state, never a path or a setting: Keras's callbacks only their listed attributes.
                if allowed is not None and name not in allowed:
                    continue
                if not isinstance(name, str) or not name.isidentifier() or name in BASE_ATTRIBUTES:
                    continue
                current = getattr(callback, name, None)
                if (
                    isinstance(value, keras.Variable)
                    and isinstance(current, (keras.Variable, tf.Variable))
                    and current.shape == value.shape
                ):
                    current.assign(value)  # the variable the callback (and maybe the model) already holds
                else:
                    setattr(callback, name, value)


def describe(value: Any) -> str:
    """A value's type as `encode` names it in its refusal."""
    try:
        encode(value, "", {})
    except Uncapturable as exc:
        return str(exc)
    return type(value).__name__


def legacy_values(entry: dict[str, Any], index: int, state: TrainingState) -> dict[str, Any]:
    """A callback's state in a format-1 checkpoint: JSON values, plus single arrays (-1) or lists of arrays (their count)."""
    values = dict(entry["values"])
    for name, count in entry["arrays"].items():
        if count == -1:
            values[name] = state.arrays[f"callbacks/{index}/{name}"]
        else:
            values[name] = [state.arrays[f"callbacks/{index}/{name}/{j:05d}"] for j in range(count)]
    return values


def uncaptured(state: TrainingState) -> list[str]:
    """What the checkpoint could not hold, one line per callback, for `kerasrun resume` to say."""
    return [
        f"the checkpoint does not hold callback {entry['class']}'s {', '.join(entry['uncaptured'])}: it starts afresh"
        for entry in state.meta.get("callbacks", [])
        if entry.get("uncaptured")
    ]


def state_attributes(callback: Any) -> tuple[str, ...]:
    """The attributes of a Keras callback that change while it trains (none for callbacks without state)."""
    for name, attributes in KERAS_CALLBACK_STATE.items():
        if isinstance(callback, getattr(keras.callbacks, name)):
            return attributes
    return ()


class RestoreCallbackState(keras.callbacks.Callback):
    """On resume: after every callback has reset itself in on_train_begin, put back their checkpointed state."""

    def __init__(self, states: CallbackStates, state: TrainingState) -> None:
        super().__init__()
        self.states = states
        self.state = state

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.states.restore(self.state)


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
