"""`model.init_from`: start training from another run's weights (transfer learning, fine-tuning), by layer name.

The rule: every layer of the new model that has weights either takes them from the source layer of
the same name (same shapes), or is listed in `init_from.skip` and keeps its freshly built weights
(e.g. a new head). Anything else is an error listing the layers. Source layers the new model doesn't
have (an old head) are left out and named in run.json. Loading a `.keras` model uses Keras's
`safe_mode` and only the current config's own `module:name` objects: no code from the source runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun._tf import keras
from kerasrun.build import registry
from kerasrun.config.schema import Config
from kerasrun.config.urls import url_of
from kerasrun.errors import ConfigError, Problem, first_line
from kerasrun.imports import suggest
from kerasrun.rundir import checkpoints
from kerasrun.rundir.checkpoints import variable_name
from kerasrun.rundir.io import read_json
from kerasrun.rundir.layout import CHECKPOINT_DIR, CONFIG_FILE, MODEL_FILE, RUN_FILE
from kerasrun.rundir.liveness import effective_status
from kerasrun.rundir.remote import local_copy
from kerasrun.runs.find import newest_completed, run_names

LOC = ("model", "init_from")


def source_path(config: Config, runs_dir: Path | None) -> Path:
    """The file or folder `model.init_from` names: its path (relative to the config), or the newest run of its name."""
    spec = config.model.init_from
    assert spec is not None
    if spec.run is not None:
        if remote := url_of(runs_dir or config.output.runs_dir):  # finding the newest run by name reads every run folder's run.json
            hint = f"name the run folder itself: model.init_from.path: {remote}/<run folder>"
            raise ConfigError(config.problem(LOC + ("run",), f"a run is found by name in a local runs dir only, not {remote}", hint))
        base = Path(runs_dir or config.output.runs_dir)
        found, _ = newest_completed(base, spec.run)
        if found is None:
            hint = suggest(spec.run, run_names(base)) or "train it first"
            raise ConfigError(config.problem(LOC + ("run",), f"no completed run named `{spec.run}` under {base}", hint))
        return found.resolve()
    assert spec.path is not None
    if url := url_of(spec.path):  # a file or run folder on gs:// (…): its local copy, fetched with tf.io.gfile
        return local_copy(url, only=(MODEL_FILE, CHECKPOINT_DIR, RUN_FILE, CONFIG_FILE))  # of a folder: what loading reads
    path = config.resolve_path(spec.path)
    if not path.exists():
        raise ConfigError(config.problem(LOC + ("path",), f"no such file or folder: {path}"))
    return path


def load_initial_weights(model: Any, config: Config, runs_dir: Path | None = None) -> dict[str, Any]:
    """Load `model.init_from` into the freshly built `model`; return what was loaded, skipped and left out.

    A run folder gives its model.keras, or — for a run that did not complete (interrupted, crashed,
    diverged) — the weights of its newest checkpoint.
    """
    path = source_path(config, runs_dir)
    if path.is_dir() and not (path / MODEL_FILE).is_file():
        return copy_by_name(checkpoint_source(config, path), model, config)
    if path.is_dir():
        path = path / MODEL_FILE
    if path.name.endswith(".weights.h5"):
        return load_weights_file(model, config, path)
    try:
        source = keras.saving.load_model(path, safe_mode=True, compile=False, custom_objects=registry.config_objects(config))
    except (OSError, TypeError, ValueError) as exc:
        raise ConfigError(config.problem(LOC, f"cannot load {path}: {first_line(exc)}")) from None
    layers = {layer.name: layer for layer in source.layers if layer.weights}
    return copy_by_name(
        Source(path, list(layers), lambda target: layers[target.name].get_weights() if target.name in layers else None), model, config
    )


@dataclass
class Source:
    """Where init_from weights come from: its layer names, and the weights it has for a layer of the new model."""

    path: Path
    layers: list[str]
    weights_for: Callable[[Any], list[np.ndarray] | None]  # None: no layer of that name


def checkpoint_source(config: Config, run_dir: Path) -> Source:
    """The newest checkpoint of a run folder without model.keras, its variables found by path (`conv_1/kernel`)."""
    latest = checkpoints.latest(run_dir)
    if latest is None:
        status = effective_status(read_json(run_dir / RUN_FILE), run_dir) if (run_dir / RUN_FILE).is_file() else "not a run folder"
        raise ConfigError(config.problem(LOC, f"{run_dir} has neither model.keras nor a checkpoint (run status: {status})"))
    state = checkpoints.read(latest)
    by_path = {name: state.arrays[f"model/{index:05d}"] for index, name in enumerate(state.meta["model"])}

    def weights_for(layer: Any) -> list[np.ndarray] | None:
        found = [by_path.get(variable_name(weight)) for weight in layer.weights]
        return None if any(w is None for w in found) else [w for w in found if w is not None]

    layers = list(dict.fromkeys(name.split("/")[0] for name in by_path if "/" in name))
    return Source(latest, layers, weights_for)


def copy_by_name(source: Source, model: Any, config: Config) -> dict[str, Any]:
    """Set each weighted layer of `model` from the same-named layer of `source`, or leave it as built if skipped."""
    spec = config.model.init_from
    assert spec is not None
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    problems: list[Problem] = []
    for index, name in enumerate(spec.skip):
        if name not in targets:
            hint = suggest(name, list(targets)) or f"layers with weights: {', '.join(targets)}"
            problems.append(config.problem(LOC + ("skip", index), f"the model has no layer `{name}` with weights", hint))
    found = {name: source.weights_for(layer) for name, layer in targets.items() if name not in spec.skip}
    missing = [name for name, weights in found.items() if weights is None]
    if missing:
        problems.append(
            config.problem(
                LOC,
                f"{source.path.name} has no layer named {', '.join(f'`{n}`' for n in missing)}",
                f"to keep their freshly built weights (e.g. a new head), list them under model.init_from.skip; "
                f"the source's layers: {', '.join(source.layers) or 'none with weights'}",
            )
        )
    loaded = []
    for name, theirs in found.items():
        if theirs is None:
            continue
        ours = targets[name].get_weights()
        if [w.shape for w in ours] != [w.shape for w in theirs]:
            shapes = f"{[tuple(w.shape) for w in theirs]} in the source, {[tuple(w.shape) for w in ours]} here"
            problems.append(
                config.problem(LOC, f"layer `{name}` has weights of other shapes: {shapes}", "list it under skip to rebuild it")
            )
            continue
        loaded.append((targets[name], theirs))
    if problems:
        raise ConfigError(problems)
    for layer, weights in loaded:
        layer.set_weights(weights)
    left_out = [name for name in source.layers if name not in targets]
    return {"path": str(source.path), "loaded": [layer.name for layer, _ in loaded], "skipped": list(spec.skip), "left_out": left_out}


def load_weights_file(model: Any, config: Config, path: Path) -> dict[str, Any]:
    """A `.weights.h5` file holds weights by position, not by layer name: Keras loads it into the same architecture."""
    spec = config.model.init_from
    assert spec is not None
    if spec.skip:
        raise ConfigError(
            config.problem(
                LOC + ("skip",),
                "skip needs a run folder or a .keras file: a .weights.h5 file stores weights by position, not by layer name",
            )
        )
    try:
        with warnings.catch_warnings():  # the file may hold optimizer state too: init_from starts a fresh optimizer
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(path)
    except (OSError, TypeError, ValueError) as exc:
        raise ConfigError(config.problem(LOC, f"cannot load {path.name} into this model: {first_line(exc)}")) from None
    return {"path": str(path), "loaded": [layer.name for layer in model.layers if layer.weights], "skipped": [], "left_out": []}
