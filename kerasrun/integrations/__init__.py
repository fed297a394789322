"""Optional integrations (TensorBoard, MLflow): whether their packages are there, checked without importing TensorFlow.

`validate` and `train` (before any run folder exists) both ask `missing_packages`, so a config that
needs a package this environment lacks fails early with the pip command, not after training started.
"""

from __future__ import annotations

from typing import Any

from kerasrun.config.schema import Config
from kerasrun.config.spec import split_spec
from kerasrun.errors import Problem
from kerasrun.optional import package_problem

# The package each integration needs, and the kerasrun extra that installs it.
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def callback_name(spec: Any) -> str:
    """The class name a `train.callbacks` entry names (`TensorBoard`, `pkg.mod:Name` → `Name`)."""
    return split_spec(spec)[0].rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def missing_packages(config: Config, deep: bool = False) -> list[Problem]:
    """A problem for each integration the config uses whose package is missing."""
    wanted: list[tuple[tuple[Any, ...], str, str]] = []
    if config.output.tensorboard is not None:
        wanted.append((("output", "tensorboard"), "tensorboard", "output.tensorboard writes TensorBoard event files"))
    for index, spec in enumerate(config.train.callbacks):
        if callback_name(spec) == "TensorBoard":
            wanted.append((("train", "callbacks", index), "tensorboard", "keras.callbacks.TensorBoard writes its events"))
    if config.output.mlflow is not None:
        wanted.append((("output", "mlflow"), "mlflow", "output.mlflow logs the run"))
    problems = []
    for loc, integration, what in wanted:
        package, extra = PACKAGES[integration]
        why = package_problem(package, deep)
        if why is not None:
            problems.append(
                config.problem(
                    loc,
                    f"{what} through the `{package}` package, which {why}",
                    f"pip install 'kerasrun[{extra}]'  (or: pip install {'mlflow-skinny' if package == 'mlflow' else package})",
                )
            )
    return problems
