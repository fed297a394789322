"""The data sources by name, for what reads raw sections or every source alike: their classes, path fields and the names their arrays give."""

from __future__ import annotations

from typing import Any, get_args

from kerasrun.config.data import DataCommon, DataConfig, TfRecordData

# Each source's class by its `source` name, for raw YAML not validated yet (compose.py).
SOURCES: dict[str, type[DataCommon]] = {
    get_args(cls.model_fields["source"].annotation)[0]: cls for cls in get_args(get_args(DataConfig)[0])
}
# Every source's path fields, for a section naming no source it knows (a base config the config extending it completes).
ANY_SOURCE_PATH_FIELDS = tuple(dict.fromkeys(name for cls in SOURCES.values() for name in cls.PATH_FIELDS))


def declared_names(data: Any) -> tuple[dict[tuple[str, ...], list[str]], dict[tuple[str, ...], list[str]]]:
    """The input and output names a data section gives its arrays, by the key that gives them: ({key: names}, {key: names}).

    Only named forms count (`target: {output: column}`, `x: {input: key}`, …): a single array is the model's only input or output.
    """
    inputs: dict[tuple[str, ...], list[str]] = {}
    outputs: dict[tuple[str, ...], list[str]] = {}
    for key, side in (("features", inputs), ("x", inputs), ("x_shape", inputs), ("target", outputs), ("y", outputs)):
        if key == "features" and isinstance(data, TfRecordData):
            continue  # a TFRecord's features are its parse spec (inputs, targets and weights alike), not input names
        value = getattr(data, key, None)
        if isinstance(value, dict):
            side[(key,)] = list(value)
    named_targets = [name for key in ("classes", "y_shape") if isinstance(getattr(data, key, None), dict) for name in getattr(data, key)]
    if named_targets:
        outputs[("classes" if isinstance(getattr(data, "classes", None), dict) else "y_shape",)] = named_targets
    if isinstance(data, TfRecordData):
        if len(data.inputs) > 1:
            inputs[("inputs",)] = list(data.inputs)
        if len(data.targets) > 1:
            outputs[("targets",)] = list(data.targets)
    return inputs, outputs


def path_fields(source: Any) -> tuple[str, ...]:
    """The path fields of the data source named `source`; every source's when it names none this version knows."""
    cls = SOURCES.get(source) if isinstance(source, str) else None
    return cls.PATH_FIELDS if cls is not None else ANY_SOURCE_PATH_FIELDS
