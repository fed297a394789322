"""What each split holds (rows, shapes, dtypes, counts per class) and how fast the training pipeline delivers it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kerasrun.config.schema import Config
from kerasrun.data.arrays import Data, Split
from kerasrun.data.epochs import EpochClock
from kerasrun.data.load import load_data
from kerasrun.data.pipeline import make_dataset
from kerasrun.data.splits import class_labels
from kerasrun.data.stream import Stream

MAX_CLASSES_LISTED = 100  # more distinct integer labels than this are a regression target, not classes
SPLITS = ("train", "validation", "test")


def data_report(config: Config, seconds: float) -> tuple[Data, dict[str, Any]]:
    """Load the data as training does and describe it: the splits, the load time (`load_s`), for `seconds` > 0 the throughput."""
    start = time.perf_counter()
    data = load_data(config)
    report = describe_data(data)
    report["load_s"] = time.perf_counter() - start
    if seconds > 0:
        report["throughput"] = measure_throughput(data, config, seconds)
    return data, report


def split_rows(report: dict[str, Any]) -> list[list[str]]:
    """A row per split in the report: its name, rows (a dataset's batches) and arrays with shape and dtype (its element spec)."""
    rows = []
    for name in SPLITS:
        split = report.get(name)
        if split is None:
            continue
        if "arrays" in split:
            arrays = "\n".join(f"{key} {tuple(a['shape'])} {a['dtype']}" for key, a in split["arrays"].items())
            rows.append([name, str(split["rows"]), arrays])
        else:
            count = str(split["rows"]) if "rows" in split else f"{split['batches'] or '?'} batches"  # a stream counts its rows
            rows.append([name, count, "\n".join(split["element"])])
    return rows


def class_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Samples per class: `label` and a column per split with counts, a row per label (`3 (cat)` with class names); no columns without counts."""
    names = report.get("class_names")
    counted = [(name, report[name]["classes"]) for name in SPLITS if name in report and "classes" in report[name]]
    if not counted:
        return [], []
    rows = []
    for label in sorted({label for _, counts in counted for label in counts}, key=int):
        named = names[int(label)] if names and int(label) < len(names) else label
        shown = label if named == label else f"{label} ({named})"
        rows.append([shown, *(str(counts.get(label, 0)) for _, counts in counted)])
    return ["label", *(name for name, _ in counted)], rows


def describe_data(data: Data) -> dict[str, Any]:
    """{split: {rows, arrays: {name: {shape, dtype}}, classes: {label: count}}} for array splits; datasets by their element spec."""
    splits = {name: split for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test))}
    out: dict[str, Any] = {name: describe_split(split) for name, split in splits.items() if split is not None}
    if data.class_names is not None:
        out["class_names"] = data.class_names
    return out


def describe_split(split: Any) -> dict[str, Any]:
    """One split: array shapes and dtypes and the label counts, or a tf.data dataset's batches and element spec."""
    if isinstance(split, Stream):
        spec = [f"{'/'.join(str(k) for k in path)}: {s.shape} {s.dtype.name}" for path, s in flat_specs(split.make().element_spec)]
        streamed: dict[str, Any] = {"rows": len(split), "streamed": True, "element": spec}
        counts = label_counts(split.y) if split.labels is not None else None
        return streamed | ({"classes": counts} if counts is not None else {})
    if not isinstance(split, Split):
        batches = int(split.cardinality())
        spec = [f"{'/'.join(str(k) for k in path)}: {s.shape} {s.dtype.name}" for path, s in flat_specs(split.element_spec)]
        return {"batches": batches if batches >= 0 else None, "element": spec}
    arrays = {name: {"shape": list(array.shape), "dtype": str(array.dtype)} for name, array in split.named_arrays()}
    out: dict[str, Any] = {"rows": len(split), "arrays": arrays}
    counts = label_counts(split.y)
    if counts is not None:
        out["classes"] = counts
    return out


def flat_specs(spec: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, TensorSpec) of every leaf of a dataset's element spec."""
    if isinstance(spec, dict):
        return [item for key, value in spec.items() for item in flat_specs(value, (*path, key))]
    if isinstance(spec, (tuple, list)):
        return [item for index, value in enumerate(spec) for item in flat_specs(value, (*path, index))]
    return [(path or ("x",), spec)]


def label_counts(y: Any) -> dict[str, int] | None:
    """{label: count} for integer (or one-hot) class targets of one output; None for float or several targets."""
    if isinstance(y, (dict, list)):
        return None
    array = np.asarray(y)
    one_hot = array.ndim >= 2 and array.shape[-1] > 1
    if not one_hot and not np.issubdtype(array.dtype, np.integer):
        return None
    labels = class_labels(array)
    values, counts = np.unique(labels, return_counts=True)
    if len(values) > MAX_CLASSES_LISTED:
        return None
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def measure_throughput(data: Data, config: Config, seconds: float) -> dict[str, float]:
    """Read the training pipeline (as training builds it, shuffled, batched, prefetched) for about `seconds`: samples and batches per second."""
    from kerasrun._tf import tf

    shuffle = data.shuffles_train(config.train.shuffle)
    batch = config.train.batch_size
    dataset = make_dataset(data.train, batch, shuffle, config.seed, None, EpochClock(), config.train.steps_per_epoch)
    samples = batches = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:  # whole passes (or, for an endless stream, until the deadline)
        for element in dataset:
            first = tf.nest.flatten(element)[0]
            samples += int(first.shape[0])
            batches += 1
            if time.perf_counter() >= deadline:
                break
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "batches": batches,
        "samples": samples,
        "samples_per_s": samples / elapsed,
        "batches_per_s": batches / elapsed,
    }
