"""Text for a sweep: one line per trial as it starts and ends, and the ranked summary's rows (the CLI renders them)."""

from __future__ import annotations

import re

from kerasrun.rundir.io import RunFileError, read_json
from kerasrun.rundir.layout import HISTORY_FILE
from kerasrun.runs.table import format_number
from kerasrun.sweep.record import RUNNING, SweepRecord, Trial


def format_metric(value: float | None) -> str:
    """A trial's metric as a sweep shows it: `-` when there is none, a nonzero value under 1e-3 in significant digits."""
    return format_number(value, missing="-", keep_small=True)


def trial_line(record: SweepRecord, trial: Trial) -> str:
    """`trial-001 (of 3)  lr=0.01: completed  val_loss 0.3521 (epoch 12)  3.2s` (numbered as its folder is)."""
    total = record.settings.get("planned", len(record.trials))
    values = "  ".join(f"{key}={value}" for key, value in ((o.partition("=")[0], o.partition("=")[2]) for o in trial.overrides))
    head = f"trial-{trial.index:03d} (of {total})  {values}"
    if trial.status == RUNNING:
        again = f", attempt {len(trial.attempts)}: resumes from its checkpoint if it has one" if len(trial.attempts) > 1 else ""
        return f"{head}: started{again}"
    text = f"{head}: {trial.status}"
    if trial.metric is not None:
        text += f"  {record.metric} {format_number(trial.metric, missing='-', keep_small=True)} (epoch {trial.best_epoch})"
    if trial.seconds is not None:
        text += f"  {trial.seconds:.1f}s"
    if trial.error and trial.status not in ("pruned", "interrupted"):
        text += f"\n    {trial.error.splitlines()[0] if trial.error.strip() else trial.error}"
    return text


def summary_rows(record: SweepRecord) -> tuple[list[str], list[list[str]]]:
    """Column names and rows of the ranked summary (best first; unranked trials after, by number)."""
    record.rank()
    keys = [dim["key"] for dim in record.space]
    fixed = ["status", f"best {record.metric}", "epoch", "epochs", "run folder"]
    headers = ["rank", "trial", *short_names(keys, taken=["rank", "trial", *fixed]), *fixed]
    rows = []
    for trial in sorted(record.trials, key=lambda t: (t.rank is None, t.rank or 0, t.index)):
        values = {o.partition("=")[0]: o.partition("=")[2] for o in trial.overrides}
        rows.append(
            [
                str(trial.rank) if trial.rank else "-",
                str(trial.index),
                *(values.get(key, "") for key in keys),
                trial.status,
                format_metric(trial.metric),
                str(trial.best_epoch or "-"),
                str(trial.epochs if trial.epochs is not None else "-"),
                trial.run_dir or "-",
            ]
        )
    return headers, rows


def missing_metric_note(record: SweepRecord) -> str | None:
    """When completed trials never logged the sweep's metric: say so, with the columns they have."""
    completed = [t for t in record.trials if t.status == "completed"]
    if not completed or any(t.metric is not None for t in completed):
        return None
    try:
        columns = [k for k in read_json(record.path / str(completed[0].run_dir) / HISTORY_FILE) if k != "epoch"]
    except RunFileError:
        columns = []
    return f"no completed trial logged `{record.metric}`, so none is ranked; its history.json has: {', '.join(columns) or 'nothing'} (--metric)"


def short_names(keys: list[str], taken: list[str] | None = None) -> list[str]:
    """Column names for the searched keys: the last part (`learning_rate`) when that is unambiguous, else the whole key.

    `taken`: the table's own columns — a searched `train.epochs` is not a second `epochs`.
    """
    lasts = [re.split(r"[.\[]", key)[-1].rstrip("]") or key for key in keys]
    return [last if lasts.count(last) == 1 and last not in (taken or []) else key for key, last in zip(keys, lasts, strict=True)]
