"""Class weights and per-class rules, folded into per-sample weights (arrays) or added per batch (tf.data)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import numpy as np

from kerasrun.config.schema import Config
from kerasrun.config.spec import split_spec
from kerasrun.config.train import is_per_output
from kerasrun.data.arrays import Split
from kerasrun.data.splits import REGRESSION_LOSSES, class_labels
from kerasrun.data.stream import Stream
from kerasrun.errors import ConfigError, Problem
from kerasrun.imports import suggest


def class_weight_table(
    config: Config, labels: np.ndarray | None, class_weight: Any, by_class: dict[int, float] | None, loc: tuple[Any, ...]
) -> np.ndarray | None:
    """Per-class weight table (index = label) from a class_weight rule and a by_class rule, multiplied."""
    if class_weight is None and by_class is None:
        return None
    if labels is None:
        if class_weight == "balanced":
            raise ConfigError(config.problem(loc, "`balanced` needs array data to count the labels"))
        present = None
    else:
        if not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
            raise ConfigError(
                config.problem(loc, "class weights need integer class labels; these targets are continuous (a regression output?)")
            )
        present = set(int(v) for v in np.unique(labels))
    rules: list[tuple[tuple[Any, ...], dict[int, float]]] = []
    if class_weight == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        assert present is not None  # `balanced` without labels raised above
        classes = np.array(sorted(present))
        weights = compute_class_weight("balanced", classes=classes, y=labels)
        rules.append((loc, {int(c): float(w) for c, w in zip(classes, weights, strict=True)}))
    elif class_weight is not None:
        rules.append((loc, class_weight))
    if by_class is not None:
        rules.append((("train", "sample_weight", "by_class"), by_class))
    problems: list[Problem] = []
    for rule_loc, table in rules:
        for label in table:
            if present is not None and label not in present:
                problems.append(
                    config.problem(rule_loc + (str(label),), f"{label} is not a label in the training data", f"labels: {sorted(present)}")
                )
    if problems:
        raise ConfigError(problems)
    size = max([max(t) for _, t in rules if t] + ([max(present)] if present else [0])) + 1
    out = np.ones(size, dtype=np.float32)
    for _, table in rules:
        for label, weight in table.items():
            out[label] *= weight
    return out


def refuse_regression_targets(config: Config, loss: Any, targets: Any, loc: tuple[Any, ...], where: str = "") -> None:
    """Class weights on a regression loss whose targets are values, not classes (diabetes under mae): every value would be a class.

    A classifier trained with mse (0/1 labels, one-hot rows: a Brier score) keeps its class weights.
    """
    name = split_spec(loss)[0] if isinstance(loss, (str, dict)) and loss else None
    if not isinstance(name, str) or name.lower().replace("_", "") not in REGRESSION_LOSSES:
        return
    y = np.asarray(targets)
    one_hot = y.ndim == 2 and y.shape[1] > 1 and bool(np.all((y == 0) | (y == 1))) and bool(np.all(y.sum(axis=1) == 1))
    if one_hot or (y.size and bool(np.all((y == 0) | (y == 1)))):
        return
    raise ConfigError(
        config.problem(
            loc,
            f"class weights need class targets, but compile.loss{where} {name} is a regression loss and the targets are values "
            f"(such as {y.flat[0]:g} and {y.flat[-1]:g}), each of which would be a class",
            "weigh samples with the source's own sample_weight (an npz key or a CSV column) instead",
        )
    )


def class_weight_notes(config: Config, class_names: list[str] | None) -> list[str]:
    """A line per class_weight label whose number is another class's name (folders 0..10 sort as text: 0, 1, 10, 2, …)."""
    class_weight = config.train.class_weight
    if not isinstance(class_weight, dict) or is_per_output(class_weight) or not class_names:
        return []
    return [
        f"train.class_weight's key {key} is label {key}, the class named `{class_names[key]}`; the class named `{key}` is label "
        f"{class_names.index(str(key))} (classes are numbered in sorted order; kerasrun data lists them)"
        for key in class_weight
        if isinstance(key, int) and 0 <= key < len(class_names) and str(key) in class_names and class_names.index(str(key)) != key
    ]


def numbered_class_weight(class_weight: Any, class_names: list[str] | None, config: Config) -> Any:
    """{class name: weight} numbered by the source's class names ({label: weight} and other rules as they are)."""
    if not isinstance(class_weight, dict) or is_per_output(class_weight) or not any(isinstance(key, str) for key in class_weight):
        return class_weight
    loc = ("train", "class_weight")
    if not class_names:
        raise ConfigError(
            config.problem(
                loc, "class names as class_weight keys need a source that names its classes (an image or text folder, text labels)"
            )
        )
    number = {name: label for label, name in enumerate(class_names)}
    mapping = ", ".join(f"{name}={label}" for name, label in list(number.items())[:20]) + (", …" if len(number) > 20 else "")
    problems = [
        config.problem(loc + (key,), f"no class is named `{key}`", suggest(key, class_names) or f"the classes: {mapping}")
        for key in class_weight
        if isinstance(key, str) and key not in number
    ]
    if problems:
        raise ConfigError(problems)
    numbered: dict[int, float] = {}
    for key, weight in class_weight.items():
        label = number[key] if isinstance(key, str) else key
        if label in numbered:
            raise ConfigError(config.problem(loc + (key,), f"class {label} is weighted twice (`{class_names[label]}` is label {label})"))
        numbered[label] = weight
    return numbered


def weight_training(train: Any, config: Config, class_names: list[str] | None = None) -> Any:
    """Fold class weights and per-class rules into per-sample weights (multiplied with the source's); class names are numbered."""
    spec = config.train.model_copy(update={"class_weight": numbered_class_weight(config.train.class_weight, class_names, config)})
    loc = ("train", "class_weight")
    by_class = spec.sample_weight.by_class if spec.sample_weight is not None else None
    if isinstance(train, Split) and isinstance(train.y, list) and (spec.class_weight is not None or by_class is not None):
        raise ConfigError(config.problem(loc, "class weights with several outputs need named targets: return y as {output name: array}"))
    if isinstance(train, Split) and isinstance(train.y, dict):
        return weight_outputs(train, config)
    if is_per_output(spec.class_weight):
        raise ConfigError(config.problem(loc, "class weights keyed by output name need a model with several outputs (and named targets)"))
    if isinstance(train, Stream):
        if spec.class_weight is None and by_class is None:
            return train
        if train.labels is None:
            raise ConfigError(config.problem(loc, "class weights need a class target (integers or text labels); this target is not one"))
        table = class_weight_table(config, train.y.astype(np.int64), spec.class_weight, by_class, loc)
        return replace(train, weights=table)
    if isinstance(train, Split):
        if spec.class_weight is None and by_class is None:
            return train
        refuse_regression_targets(
            config, config.compile.loss, train.y, loc if spec.class_weight is not None else ("train", "sample_weight", "by_class")
        )
        labels = class_labels(train.y)
        table = class_weight_table(config, labels, spec.class_weight, by_class, loc)
        assert table is not None  # a class_weight or by_class rule is set
        weights = table[labels.astype(np.int64)]
        if train.sample_weight is not None:
            # Only named targets (handled by weight_outputs) come with named weights: here it is one array.
            weights = weights * cast(np.ndarray, train.sample_weight).astype(np.float32)
        return Split(train.x, train.y, weights.astype(np.float32))
    table = class_weight_table(config, None, spec.class_weight, by_class, loc)
    return train if table is None else weight_dataset(train, table)


def weight_outputs(train: Split, config: Config) -> Split:
    """Per-output sample weights for a model with several outputs: class weights keyed by output name."""
    assert isinstance(train.y, dict)  # weight_training sends only named targets here
    spec = config.train
    loc = ("train", "class_weight")
    if spec.sample_weight is not None:
        raise ConfigError(
            config.problem(
                ("train", "sample_weight"), "with several outputs, give per-class weights as class_weight: {output: {label: weight}}"
            )
        )
    if spec.class_weight is None:
        return train
    if not is_per_output(spec.class_weight):
        raise ConfigError(
            config.problem(
                loc,
                "with several outputs, key class weights by output name",
                f"e.g. class_weight: {{{next(iter(train.y))}: {{0: 1.0, 1: 2.0}}}}",
            )
        )
    unknown = [name for name in spec.class_weight if name not in train.y]
    if unknown:
        raise ConfigError(
            [
                config.problem(
                    loc + (name,),
                    f"the targets have no output `{name}`",
                    suggest(name, list(train.y)) or f"outputs: {', '.join(train.y)}",
                )
                for name in unknown
            ]
        )
    weights = {}
    for name, targets in train.y.items():
        rule = spec.class_weight.get(name)
        base = np.ones(len(targets), np.float32) if train.sample_weight is None else np.asarray(train.sample_weight, np.float32)
        if rule is None:
            weights[name] = base
            continue
        loss = config.compile.loss
        refuse_regression_targets(config, loss.get(name, loss) if isinstance(loss, dict) else loss, targets, loc + (name,), f".{name}")
        labels = class_labels(targets)
        table = class_weight_table(config, labels, rule, None, loc + (name,))
        assert table is not None  # rule is set
        weights[name] = table[labels.astype(np.int64)] * base
    return Split(train.x, train.y, weights)


def weight_dataset(dataset: Any, table: np.ndarray) -> Any:
    """Multiply each batch's sample weights by the class weights of its labels."""
    from kerasrun._tf import tf

    lookup = tf.constant(table)

    @tf.autograph.experimental.do_not_convert  # static shape tests only; see make_dataset
    def add_weights(x: Any, y: Any, sw: Any = None) -> tuple[Any, Any, Any]:
        labels = tf.argmax(y, axis=-1) if y.shape.rank and y.shape.rank >= 2 and y.shape[-1] and y.shape[-1] > 1 else tf.reshape(y, [-1])
        weights = tf.gather(lookup, tf.cast(labels, tf.int32))
        return x, y, weights if sw is None else weights * tf.cast(sw, tf.float32)

    return dataset.map(add_weights)
