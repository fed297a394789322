"""kerasrun's own Keras callbacks: the history file, the divergence guard, run.json's progress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasrun._tf import keras
from kerasrun.config.spec import split_spec
from kerasrun.config.train import CALLBACK_PATH_KEYS
from kerasrun.imports import suggest
from kerasrun.keras_private import monitor_direction_problem
from kerasrun.rundir.io import is_finite, write_json_atomic
from kerasrun.rundir.record import RunRecord, runs_dir_problem


class HistoryWriter(keras.callbacks.Callback):
    """Rewrites history.json after every epoch; an epoch with a non-finite loss is not recorded."""

    def __init__(self, path: Path, history: dict[str, list[Any]] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.history: dict[str, list[Any]] = history if history is not None else {"epoch": []}

    def save(self) -> None:
        """Rewrite history.json with the epochs recorded so far."""
        write_json_atomic(self.path, self.history)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if not is_finite(logs.get("loss", 0.0)):
            return
        self.history["epoch"].append(epoch + 1)
        for key, value in logs.items():
            column = self.history.setdefault(key, [None] * (len(self.history["epoch"]) - 1))
            column.append(float(value))
        for column in self.history.values():  # a key missing this epoch (rare) keeps columns aligned
            if len(column) < len(self.history["epoch"]):
                column.append(None)
        self.save()


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first NaN/inf loss and remembers where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.diverged_at: dict[str, int | None] | None = None  # batch is None at an epoch end
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.diverged_at is None and not is_finite((logs or {}).get("loss", 0.0)):
            self.diverged_at = {"epoch": self.epoch + 1, "batch": batch + 1}
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.diverged_at is None and not is_finite((logs or {}).get("loss", 0.0)):
            self.diverged_at = {"epoch": epoch + 1, "batch": None}
            self.model.stop_training = True


class RecordProgress(keras.callbacks.Callback):
    """Brings run.json up to date after every epoch: epochs completed and a fresh heartbeat."""

    def __init__(self, record: RunRecord, epochs_done: Callable[[], int]) -> None:
        super().__init__()
        self.record = record
        self.epochs_done = epochs_done

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.record.beat(epochs_completed=self.epochs_done())


def check_callbacks(model: Any, callbacks: list[Any], config: Any) -> list[Any]:
    """Problems Keras would only raise during training (or not at all): arguments it reads late, a rate a callback can't set."""
    problems = [problem for index, callback in enumerate(callbacks) for problem in check_arguments(callback, index, config)]
    optimizer = getattr(model, "optimizer", None)
    # The optimizer's public config holds a schedule as its serialization dict, a plain rate as a number.
    rate = optimizer.get_config().get("learning_rate") if optimizer is not None else None
    if not isinstance(rate, dict):
        return problems
    setters = (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau)
    return problems + [
        config.problem(
            ("train", "callbacks", index),
            f"{type(callback).__name__} sets the learning rate, but compile.optimizer's learning_rate is a schedule "
            f"({rate.get('class_name', 'a schedule')}) that Keras won't let anything set",
            "use the schedule or the callback, not both",
        )
        for index, callback in enumerate(callbacks)
        if isinstance(callback, setters)
    ]


MODES = ("auto", "min", "max")  # Keras warns about any other `mode` and silently uses auto


def check_arguments(callback: Any, index: int, config: Any) -> list[Any]:
    """A built-in callback's arguments that Keras takes as given and fails on (or ignores) only once training runs."""
    name, kwargs, _ = split_spec(config.train.callbacks[index])
    loc = ("train", "callbacks", index, name)
    problems = []
    watchers = (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau, keras.callbacks.ModelCheckpoint)
    if isinstance(callback, watchers) and "mode" in kwargs and kwargs["mode"] not in MODES:
        hint = suggest(str(kwargs["mode"]), list(MODES))
        problems.append(config.problem((*loc, "mode"), f"mode must be one of auto, min, max (got {kwargs['mode']!r})", hint))
    if isinstance(callback, keras.callbacks.LearningRateScheduler) and not callable(callback.schedule):
        problems.append(
            config.problem(
                (*loc, "schedule"),
                f"schedule must be a function (epoch, lr) -> lr, given by import path (got {callback.schedule!r})",
                "e.g. schedule: my_module:step_decay; for a fixed rate set compile.optimizer's learning_rate",
            )
        )
    if isinstance(callback, keras.callbacks.CSVLogger) and not (isinstance(callback.sep, str) and len(callback.sep) == 1):
        problems.append(
            config.problem((*loc, "separator"), f"separator must be one character (got {callback.sep!r})", "e.g. separator: ','")
        )
    for key in CALLBACK_PATH_KEYS:  # relative paths go into the run folder; an absolute one's folder is made when training starts
        value = kwargs.get(key)
        folder = Path(value).expanduser().parent if isinstance(value, str) and value else None
        if folder is not None and folder.is_absolute() and (why := runs_dir_problem(folder)) is not None:
            problems.append(config.problem((*loc, key), f"{value} cannot be written: {why}", "give a path in a folder you can write"))
    return problems


WATCHERS = ("EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint")  # Keras callbacks that watch a `monitor` metric


def logs_unknown_names(config: Any) -> bool:
    """Whether a callback by import path is configured: it may write its own keys into each epoch's logs (a custom `val_f1`)."""
    return any(":" in split_spec(spec)[0] for spec in config.train.callbacks)


def check_monitors(model: Any, callbacks: list[Any], validation: bool, config: Any) -> list[Any]:
    """A `monitor` that names no metric the compiled model logs: Keras fails on it (or warns and never acts) only while training.

    Call it once the first batch went through the loss and the metrics, so that Keras has built them
    and `get_metrics_result()` holds the names each epoch's logs will have (`val_` ones with validation data).
    """
    logged = list(model.get_metrics_result())
    names = [*logged, *(f"val_{name}" for name in logged if validation), "learning_rate"]
    problems = []
    for index, (spec, callback) in enumerate(zip(config.train.callbacks, callbacks, strict=True)):
        name, kwargs, _ = split_spec(spec)
        given = "monitor" in kwargs
        # Not given: the callback's own default (val_loss for all three), which Keras only warns about and never acts on.
        monitor = kwargs["monitor"] if given else getattr(callback, "monitor", None)
        kind = name.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if kind not in WATCHERS or not isinstance(monitor, str):
            continue
        if not given and kind == "ModelCheckpoint" and not getattr(callback, "save_best_only", False):
            continue  # it saves every time, reading no metric
        loc = ("train", "callbacks", index, name)
        if monitor not in names and not logs_unknown_names(config):  # a user callback may log it: Keras then finds it
            shown = ", ".join(names[:-1]) + (" (no validation data: no val_ metrics)" if not validation else "")
            hint = suggest(monitor, names) or f"the logged metrics: {shown}"
            if given:
                problems.append(config.problem((*loc, "monitor"), f"the model logs no metric `{monitor}`", hint))
            else:
                absent = "there is no validation data" if monitor.startswith("val_") and not validation else "the model logs no such metric"
                problems.append(
                    config.problem(
                        loc,
                        f"watches `{monitor}` (its default monitor), but {absent}: it would never act",
                        f"set monitor: {monitor.removeprefix('val_') if monitor.removeprefix('val_') in names else names[0]}"
                        + (", or give validation data (train.validation_split)" if not validation else ""),
                    )
                )
        elif kwargs.get("mode", "auto") == "auto" and (why := monitor_direction_problem(callback, model)) is not None:
            problems.append(config.problem((*loc, "mode"), why, "set mode: min (for a loss or an error) or mode: max"))
    return problems
