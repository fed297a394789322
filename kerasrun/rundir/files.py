"""A run folder's files read as data — history, metrics, config — for the commands that list, compare and plot runs.

Nothing here imports TensorFlow or code a config names: a run folder is data (bounded YAML safe_load, bounded JSON).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kerasrun.config.spec import split_spec
from kerasrun.config.yamlsource import MAX_BYTES, load_yaml_value
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.io import RunFileError, present, read_json, read_run_file
from kerasrun.rundir.layout import CONFIG_FILE, EXPORT_DIR, HISTORY_FILE, METRICS_FILE, MODEL_FILE, RUN_FILE, SWEEP_FILE

# Callbacks that watch a metric, and the metric they watch when the config does not say (Keras's default).
MONITORING_CALLBACKS = {"EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "BackupAndRestore"}
DEFAULT_MONITOR = "val_loss"
# Substrings of metric names where larger is better; the rest (losses, errors) are minimized. Keras's
# callbacks guess a mode from the name the same way (`mode="auto"`).
HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2", "cosine_similarity")


def read_history(run_dir: Path) -> dict[str, list[Any]]:
    """history.json: a column per metric, one value per epoch (None where an epoch has no value)."""
    path = Path(run_dir) / HISTORY_FILE
    history = read_json(path)
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise RunFileError(Problem(key="", message="is not a history (an object of lists)", file=str(path)))
    return history


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json (the test metrics), or None when the run has none (no test data, or it did not finish)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return None
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise RunFileError(Problem(key="", message="is not a JSON object", file=str(path)))
    return metrics


def read_config_data(run_dir: Path) -> dict[str, Any]:
    """config.yaml as plain data (safe_load within the config loader's bounds; no schema, no imports): what the run was trained with."""
    path = Path(run_dir) / CONFIG_FILE
    data = load_bounded(config_text(path), path)
    if not isinstance(data, dict):
        raise RunFileError(Problem(key="", message="is not a mapping", file=str(path)))
    return data


def config_text(path: Path) -> str:
    """config.yaml's text: a regular file of at most a config's size, UTF-8; RunFileError otherwise."""
    raw = read_run_file(path, MAX_BYTES)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(
            Problem(key="", message=f"cannot be read: not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path))
        ) from None


def load_bounded(text: str, path: Path) -> Any:
    """YAML data as yamlsource bounds configs (depth, aliases expanded, size); RunFileError naming the file and why."""
    try:
        return load_yaml_value(text, str(path))[0]
    except ConfigError as exc:
        why = exc.problems[0] if exc.problems else None
        at = f" (line {why.line})" if why is not None and why.line else ""
        raise RunFileError(Problem(key="", message=f"is not valid YAML{at}: {why.message if why else exc}", file=str(path))) from None


def read_config_section(run_dir: Path, section: str) -> dict[str, Any]:
    """One top-level section of config.yaml (e.g. `train`) as plain data, parsing only that section when it can.

    kerasrun writes config.yaml in block style, a section starting at a line `train:` and ending at
    the next line that starts in column 0; parsing those lines alone makes listing 1,000 runs ~5x
    faster (the YAML parse of whole configs was 85 % of the time). Any other layout (a hand-edited
    file) falls back to parsing the whole file.
    """
    path = Path(run_dir) / CONFIG_FILE
    text = config_text(path)
    lines = text.splitlines(keepends=True)
    header = f"{section}:\n"
    if header in lines:
        start = lines.index(header)
        end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n", "#", "-", "")), len(lines))
        try:
            data = load_bounded("".join(lines[start:end]), path)
        except RunFileError:
            data = None
        if isinstance(data, dict) and isinstance(data.get(section), dict):
            return data[section]
    data = load_bounded(text, path)
    if not isinstance(data, dict):
        raise RunFileError(Problem(key="", message="is not a mapping", file=str(path)))
    value = data.get(section)
    return value if isinstance(value, dict) else {}


def metric_mode(name: str) -> str:
    """`max` for metrics where larger is better (accuracy, AUC, …), `min` for losses and errors."""
    base = name.removeprefix("val_").lower()
    return "max" if any(part in base for part in HIGHER_IS_BETTER) and "loss" not in base else "min"


def monitored_metric(train: dict[str, Any] | None, history: dict[str, list[Any]] | None) -> str | None:
    """The metric the run's callbacks (config `train` section) watch — EarlyStopping's `monitor`, …; else val_loss, else loss."""
    columns = set(history or {}) - {"epoch"}
    callbacks = (train or {}).get("callbacks")
    for spec in callbacks if isinstance(callbacks, list) else []:
        name, kwargs, _ = split_spec(spec)
        monitor = kwargs.get("monitor")
        if isinstance(monitor, str) and monitor:
            return monitor
        if name.rsplit(".", 1)[-1].rsplit(":", 1)[-1] in MONITORING_CALLBACKS:
            return DEFAULT_MONITOR
    for name in ("val_loss", "loss"):
        if name in columns:
            return name
    return next(iter(sorted(columns)), None)


def last_value(values: list[Any]) -> float | None:
    """The last number of a history column (epochs without a value are skipped)."""
    for value in reversed(values):
        if isinstance(value, (int, float)):
            return float(value)
    return None


def best_epoch(history: dict[str, list[Any]], metric: str, mode: str | None = None) -> tuple[int, float] | None:
    """(epoch, value) where `metric` was best — `mode` min or max, by default from its name; the earliest of ties; None without finite values."""
    values = history.get(metric) or []
    epochs = history.get("epoch") or list(range(1, len(values) + 1))
    points = [(int(e), float(v)) for e, v in zip(epochs, values, strict=False) if isinstance(v, (int, float)) and math.isfinite(v)]
    if not points:
        return None
    sign = -1.0 if (mode or metric_mode(metric)) == "max" else 1.0
    return min(points, key=lambda point: (sign * point[1], point[0]))


def is_run_folder(folder: Path) -> bool:
    """A folder with a run.json or a config.yaml, whatever they are (a FIFO or a dangling link makes an unreadable run)."""
    return present(folder / RUN_FILE) or present(folder / CONFIG_FILE)


def is_sweep_folder(folder: Path) -> bool:
    """A folder holding sweep.json: a sweep's, whose trial run folders sit beside it."""
    return present(folder / SWEEP_FILE)


def trial_folders(sweep_dir: Path) -> list[Path]:
    """The run folders inside a sweep folder, in name order (whichever machine trained them)."""
    return sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and is_run_folder(p))


def stale_exports(run_dir: Path) -> list[str]:
    """The artifacts in <run>/export/ older than the run's model.keras (a resume trained on after they were exported)."""
    model, folder = run_dir / MODEL_FILE, run_dir / EXPORT_DIR
    if not model.is_file() or not folder.is_dir():
        return []
    newest = model.stat().st_mtime_ns
    return sorted(
        f"{EXPORT_DIR}/{entry.name}" for entry in folder.iterdir() if not entry.name.startswith(".") and entry.stat().st_mtime_ns < newest
    )
