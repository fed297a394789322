"""`kerasrun compare`: what differs between runs — config keys, metrics (final, best, test), versions and devices.

Reads run folders only (JSON, YAML safe_load); never imports TensorFlow or code a config names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.files import best_epoch, last_value, metric_mode, read_config_data, read_history, read_metrics
from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import HISTORY_FILE, RUN_FILE
from kerasrun.rundir.liveness import effective_status
from kerasrun.runs.table import format_delta, format_number, format_value

MISSING: Any = None  # a key one run's config has and another's lacks shows as null

# run.json facts about where and with what a run trained; shown when they differ.
ENVIRONMENT_FIELDS = ("kerasrun", "python", "tensorflow", "keras", "platform", "hostname", "git_commit")
RUN_FIELDS = ("device", "loop", "precision", "deterministic")


@dataclass
class MetricRow:
    """One metric across runs: its values, each run's difference to the first run's, and where it was best."""

    kind: str  # `final` (last epoch), `best` (over the epochs), `test` (metrics.json)
    metric: str
    values: list[float | None]
    deltas: list[float | None]  # value - first run's value
    epochs: list[int | None]  # for `best`: the epoch where each run was best

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object."""
        row: dict[str, Any] = {"kind": self.kind, "metric": self.metric, "values": self.values, "deltas": self.deltas}
        if self.kind == "best":
            row["epochs"] = self.epochs
            row["mode"] = metric_mode(self.metric)
        return row


@dataclass
class Comparison:
    """The differences between two or more runs."""

    runs: list[dict[str, Any]]  # per run: path, name, status, epochs
    config: list[tuple[str, list[Any]]]  # dotted key, the value in each run — only keys whose values differ
    metrics: list[MetricRow]
    environment: list[tuple[str, list[Any]]]  # versions, devices, … that differ
    unreadable: list[dict[str, str]] = field(default_factory=list)  # per run folder that can't be read: path, problem

    def to_json(self) -> dict[str, Any]:
        """The comparison as a JSON object."""
        return {
            "runs": self.runs,
            "unreadable": self.unreadable,
            "config": [{"key": key, "values": values} for key, values in self.config],
            "metrics": [row.to_json() for row in self.metrics],
            "environment": [{"key": key, "values": values} for key, values in self.environment],
        }


@dataclass
class RunFiles:
    """What compare reads of one run folder."""

    run_dir: Path
    info: dict[str, Any]
    config: dict[str, Any]
    history: dict[str, list[Any]]
    metrics: dict[str, Any] | None


def read_run_files(run_dir: Path) -> RunFiles:
    """run.json, config.yaml, history.json and metrics.json of a run; a ConfigError naming the file that can't be read."""
    info = read_json(run_dir / RUN_FILE)
    if not isinstance(info, dict):
        raise RunFileError(Problem(key="", message="is not a JSON object", file=str(run_dir / RUN_FILE)))
    config = read_config_data(run_dir)
    history = read_history(run_dir) if (run_dir / HISTORY_FILE).exists() else {"epoch": []}
    return RunFiles(run_dir, info, config, history, read_metrics(run_dir))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as `dotted.keys[0].like_set` → leaf value (an empty mapping or list is a leaf)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def differing(tables: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The keys whose values are not the same in every table, in first-seen order, with each table's value."""
    keys: dict[str, None] = {}
    for table in tables:
        keys.update(dict.fromkeys(table))
    rows = []
    for key in keys:
        values = [table.get(key, MISSING) for table in tables]
        present = [key in table for table in tables]
        if all(present) and all(value == values[0] and type(value) is type(values[0]) for value in values):
            continue
        rows.append((key, values))
    return rows


def delta(value: float | None, first: float | None) -> float | None:
    """value - first, when both are numbers."""
    return value - first if value is not None and first is not None else None


def compare_runs(run_dirs: list[Path]) -> Comparison:
    """Compare run folders (two or more): config keys that differ, metrics side by side with deltas, versions/devices that differ."""
    if len(run_dirs) < 2:
        raise ConfigError(Problem(key="RUN", message="compare needs at least two runs", hint="kerasrun compare RUN RUN [RUN…]"))
    runs: list[RunFiles] = []
    unreadable: list[dict[str, str]] = []
    for run_dir in run_dirs:
        try:
            runs.append(read_run_files(Path(run_dir)))
        except RunFileError as exc:  # shown as one `unreadable: why` row; the other runs are compared
            unreadable.append({"path": str(run_dir), "problem": str(exc)})
    if not runs:
        raise ConfigError([Problem(key="RUN", message=f"unreadable: {item['problem']}", file=item["path"]) for item in unreadable])
    header = [
        {
            "path": str(run.run_dir),
            "name": run.info.get("name"),
            "status": effective_status(run.info, run.run_dir),
            "epochs": len(run.history.get("epoch") or []),
        }
        for run in runs
    ]
    config_rows = differing([flatten(run.config) for run in runs])
    metric_rows: list[MetricRow] = []
    columns: dict[str, None] = {}
    for run in runs:
        columns.update(dict.fromkeys(key for key in run.history if key != "epoch"))
    for metric in columns:
        finals = [last_value(run.history.get(metric) or []) for run in runs]
        metric_rows.append(MetricRow("final", metric, finals, [delta(v, finals[0]) for v in finals], [None] * len(runs)))
    for metric in columns:
        bests = [best_epoch(run.history, metric) for run in runs]
        values = [best[1] if best else None for best in bests]
        epochs = [best[0] if best else None for best in bests]
        metric_rows.append(MetricRow("best", metric, values, [delta(v, values[0]) for v in values], epochs))
    tests: dict[str, None] = {}
    for run in runs:
        tests.update(dict.fromkeys(run.metrics or {}))
    for metric in tests:
        values = [as_number((run.metrics or {}).get(metric)) for run in runs]
        metric_rows.append(MetricRow("test", metric, values, [delta(v, values[0]) for v in values], [None] * len(runs)))
    facts = []
    for run in runs:
        environment = dict_field(run.info, "environment")
        fact = {key: run.info.get(key) for key in RUN_FIELDS}
        placement = dict_field(run.info, "placement")
        fact.update({"strategy": placement.get("strategy"), "replicas": placement.get("replicas")})
        fact.update({key: environment.get(key) for key in ENVIRONMENT_FIELDS})
        facts.append(fact)
    return Comparison(header, config_rows, metric_rows, differing(facts), unreadable)


def dict_field(info: dict[str, Any], key: str) -> dict[str, Any]:
    """A mapping field of run.json ({} when it is absent or not a mapping)."""
    value = info.get(key)
    return value if isinstance(value, dict) else {}


def as_number(value: Any) -> float | None:
    """A metric value as a float (None when it is not a number)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_cells(comparison: Comparison) -> list[list[str]]:
    """The runs table's rows: `#N`, the folder's name, the run's name, status and epochs."""
    return [
        [f"#{index + 1}", Path(run["path"]).name, str(run["name"]), run["status"], str(run["epochs"])]
        for index, run in enumerate(comparison.runs)
    ] + [["", Path(item["path"]).name, "", f"unreadable: {item['problem']}", ""] for item in comparison.unreadable]


def value_cells(rows: list[tuple[str, list[Any]]]) -> list[list[str]]:
    """Rows of (key, [value per run]) as text: the key, then one cell per run."""
    return [[key, *(format_value(value) for value in values)] for key, values in rows]


def metric_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The metrics table: kind, metric, each run's value (`best` with its epoch in brackets) and, after #1, its Δ."""
    headers = ["", "metric"]
    for index in range(len(comparison.runs)):
        headers += [f"#{index + 1}", f"Δ#{index + 1}"] if index else [f"#{index + 1}"]
    rows = []
    for row in comparison.metrics:
        cells = [row.kind, row.metric]
        for index, value in enumerate(row.values):
            epoch = f" [{row.epochs[index]}]" if row.kind == "best" and row.epochs[index] is not None else ""
            cells.append(format_number(value) + epoch)
            if index:
                cells.append(format_delta(row.deltas[index]))
        rows.append(cells)
    return headers, rows
