"""Open a finished run (`load_run`: signature checked, model loaded in safe_mode) and `evaluate` it on its test/validation data."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from kerasrun._tf import keras
from kerasrun.build import layers  # noqa: F401  (registers kerasrun's own layers for loading)
from kerasrun.build.model import build_training_state, input_names, output_names
from kerasrun.build.registry import config_objects
from kerasrun.config.schema import Config
from kerasrun.data import load_data, make_dataset, name_lists
from kerasrun.errors import ConfigError, Problem, first_line
from kerasrun.rundir.io import not_regular, present
from kerasrun.rundir.layout import CONFIG_FILE, MODEL_FILE
from kerasrun.rundir.opened import open_run, require_completed
from kerasrun.train.trainers.base import evaluate_model


def load_run(run_dir: Path, trust: bool = False) -> tuple[Config, Any]:
    """A completed, trusted run's config and its saved model (Keras safe_mode; custom objects from the config's imports).

    Nothing the folder names is imported before its signature is checked: a run folder handed over by
    someone else can name any `module:name`.
    """
    run_dir = Path(run_dir)
    run = open_run(run_dir, trust)
    require_completed(run)
    config = run.config()
    model_path = run_dir / MODEL_FILE
    if not present(model_path):
        raise ConfigError(Problem(key="", message="the run kept no model.keras (output.save_model was false)", file=str(run_dir)))
    why = not_regular(str(model_path))
    if why is not None:  # Keras would open a FIFO and wait for a writer forever
        raise ConfigError(Problem(key="", message=f"cannot load the model: it is {why}", file=str(model_path)))
    if not zipfile.is_zipfile(model_path):  # Keras says "File not found" of a cut-off or empty one: say what it is
        raise ConfigError(
            Problem(
                key="",
                message="cannot load the model: not a complete .keras file (not a zip archive: cut off, empty, or another kind of file)",
                file=str(model_path),
                hint="retrain the run (or copy its model.keras again)",
            )
        )
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, custom_objects=config_objects(config))
    except (TypeError, ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:  # what a cut, empty or foreign file raises
        raise ConfigError(
            Problem(
                key="",
                message=f"cannot load the model: {first_line(exc)}",
                file=str(model_path),
                hint="the file is cut off, not a .keras file, or another model's: retrain the run (or copy its model.keras again)",
            )
        ) from None
    return config, model


def evaluate_run(run_dir: Path, split: str = "test", trust: bool = False) -> dict[str, float]:
    """Evaluate the run's model on its test split or on its validation data."""
    config, model = load_run(run_dir, trust)
    data = name_lists(load_data(config), input_names(model), output_names(model))
    chosen = data.test if split == "test" else data.validation
    if chosen is None:
        raise ConfigError(Problem(key="", message=f"the run's data has no {split} split", file=str(run_dir / CONFIG_FILE)))
    batch = config.evaluate.batch_size or config.train.batch_size
    dataset = make_dataset(chosen, batch, False, config.seed)
    build_training_state(model, dataset)
    return evaluate_model(model, dataset, config.evaluate.steps)
