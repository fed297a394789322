"""Learning curves with matplotlib: one panel per metric, train and `val_` curves, one colour per run, the best epoch marked.

matplotlib is an optional extra (`kerasrun[plot]`) imported only when a picture is drawn, through
its object-oriented API with the Agg canvas (no pyplot: no global figure state, no GUI backend).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.files import best_epoch
from kerasrun.rundir.io import write_atomic
from kerasrun.rundir.layout import CURVES_FILE

FORMATS = ("png", "svg", "pdf")
PANEL_INCHES = (5.0, 3.4)  # width and height of one panel
MAX_COLUMNS = 3


class PlotUnavailableError(ConfigError):
    """matplotlib (or plotext, for a terminal plot) is not installed."""


@dataclass
class Curves:
    """One run's history, labelled for the legend."""

    label: str
    history: dict[str, list[Any]]


def base_metrics(histories: list[dict[str, list[Any]]]) -> list[str]:
    """The metric names across histories without the `val_` prefix, in first-seen order (`loss` first)."""
    names: dict[str, None] = {}
    for history in histories:
        for key in history:
            if key != "epoch":
                names[key.removeprefix("val_")] = None
    return sorted(names, key=lambda name: (name != "loss", list(names).index(name)))


def choose_metrics(curves: list[Curves], wanted: list[str] | None) -> list[str]:
    """The panels to draw: every metric, or the `--metric` ones (with or without `val_`); ConfigError for one no run has."""
    available = base_metrics([c.history for c in curves])
    if not wanted:
        if not available:
            raise ConfigError(Problem(key="", message="no run has a recorded epoch (history.json is empty)"))
        return available
    chosen, problems = [], []
    for name in wanted:
        base = name.removeprefix("val_")
        if base in available:
            chosen.append(base)
        else:
            problems.append(
                Problem(key="--metric", message=f"no run recorded `{name}`", hint=f"recorded: {', '.join(available) or 'nothing'}")
            )
    if problems:
        raise ConfigError(problems)
    return list(dict.fromkeys(chosen))


def output_format(path: Path) -> str:
    """png, svg or pdf from the file name; ConfigError for anything else."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(
            Problem(
                key="--output",
                message=f"cannot write `.{suffix}` pictures" if suffix else "has no file suffix",
                file=str(path),
                hint="use .png, .svg or .pdf",
            )
        )
    return suffix


def points(history: dict[str, list[Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one history column, without epochs that have no finite value."""
    values = history.get(key) or []
    epochs = history.get("epoch") or list(range(1, len(values) + 1))
    pairs = [(int(e), float(v)) for e, v in zip(epochs, values, strict=False) if isinstance(v, (int, float)) and math.isfinite(float(v))]
    return [e for e, _ in pairs], [v for _, v in pairs]


def draw_figure(curves: list[Curves], metrics: list[str]) -> Any:
    """A matplotlib Figure: a panel per metric, train solid and validation dashed, a colour per run, a star at the best epoch."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(
            Problem(key="", message="drawing curves needs matplotlib", hint="pip install 'kerasrun[plot]' (or matplotlib)")
        ) from None
    columns = min(len(metrics), MAX_COLUMNS)
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(curves))]
    for ax, metric in zip(axes, metrics, strict=False):
        for curve, colour in zip(curves, colours, strict=False):
            for key, style, role in ((metric, "-", "train"), (f"val_{metric}", "--", "val")):
                epochs, values = points(curve.history, key)
                if epochs:
                    ax.plot(epochs, values, style, color=colour, marker="." if len(epochs) < 30 else None, label=f"{curve.label} {role}")
            # The best epoch of the curve that selects models (validation when there is one).
            watched = f"val_{metric}" if points(curve.history, f"val_{metric}")[0] else metric
            best = best_epoch(curve.history, watched)
            if best is not None:
                ax.plot([best[0]], [best[1]], marker="*", markersize=12, color=colour, markeredgecolor="black", linestyle="none")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize="small")
    figure.suptitle("learning curves (★ best epoch: validation if recorded, else train)", fontsize="medium")
    return figure


def save_curves(curves: list[Curves], metrics: list[str], path: Path) -> Path:
    """Draw the curves and write them to `path` (png, svg or pdf by its suffix) atomically."""
    fmt = output_format(path)
    figure = draw_figure(curves, metrics)
    buffer = io.BytesIO()
    # A fixed creation date keeps pdf/svg files of the same runs identical; png gets no timestamp.
    metadata = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    figure.savefig(buffer, format=fmt, dpi=100, metadata=metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(buffer.getvalue()))
    return path


def write_run_curves(run_dir: Path, history: dict[str, list[Any]]) -> str | None:
    """curves.png in a run folder at the end of training; never fails the run: a warning line instead (None when written)."""
    if not any(values for key, values in history.items() if key != "epoch"):
        return None  # no epoch recorded, nothing to draw
    try:
        save_curves([Curves(Path(run_dir).name, history)], base_metrics([history]), Path(run_dir) / CURVES_FILE)
    except PlotUnavailableError:
        return f"no {CURVES_FILE}: matplotlib is not installed (pip install 'kerasrun[plot]', or set output.curves: false)"
    except Exception as exc:  # a drawing failure must not cost the trained run
        return f"could not draw {CURVES_FILE}: {type(exc).__name__}: {exc}"
    return None


def plot_in_terminal(curves: list[Curves], metrics: list[str], width: int = 100) -> str:
    """The curves as text for a terminal, with plotext (a plot per metric, stacked; plotext 6's figure API or plotext 5's)."""
    try:
        import plotext
    except ImportError:
        raise PlotUnavailableError(
            Problem(key="", message="a terminal plot needs plotext", hint="pip install plotext, or pass -o curves.png")
        ) from None
    parts = []
    for metric in metrics:
        series = [
            (f"{curve.label} {role}", *points(curve.history, key))
            for curve in curves
            for key, role in ((metric, "train"), (f"val_{metric}", "val"))
            if points(curve.history, key)[0]
        ]
        figure = getattr(plotext, "figure", None)
        if figure is not None and hasattr(figure, "signal"):  # plotext 6
            figure.clear()
            figure.plot_size(width, 18)
            for label, epochs, values in series:
                signal = figure.signal(epochs, values)
                signal.lines()
                signal.label(label)
                figure.draw(signal)
            figure.title(metric)
            figure.label("epoch", axis="x")
            parts.append(str(figure.build()))
            figure.clear()
        else:  # plotext 5
            plotext.clear_figure()
            plotext.plotsize(width, 18)
            for label, epochs, values in series:
                plotext.plot(epochs, values, label=label)
            plotext.title(metric)
            plotext.xlabel("epoch")
            parts.append(plotext.build())
            plotext.clear_figure()
    return "\n".join(parts)


def load_curves(run_dirs: list[Path]) -> tuple[list[Curves], list[tuple[Path, str]]]:
    """Each run's history.json, labelled by its folder name, and (folder, why) of each whose history can't be read;
    a ConfigError when no run's can."""
    from kerasrun.rundir.files import read_history
    from kerasrun.rundir.io import RunFileError
    from kerasrun.rundir.layout import HISTORY_FILE, RUN_FILE

    curves, unreadable = [], []
    for run_dir in run_dirs:
        if not (Path(run_dir) / HISTORY_FILE).exists() and (Path(run_dir) / RUN_FILE).exists():
            unreadable.append((Path(run_dir), "no epoch has ended yet: history.json is written at the end of each"))
            continue
        try:
            curves.append(Curves(Path(run_dir).name, read_history(Path(run_dir))))
        except RunFileError as exc:  # one unreadable run is reported; the others are drawn
            unreadable.append((Path(run_dir), f"unreadable: {exc}"))
    if not curves:
        raise ConfigError([Problem(key="RUN", message=why, file=str(path)) for path, why in unreadable])
    return curves, unreadable
