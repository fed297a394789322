"""Option types and options that several commands share."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Progress(str, Enum):
    auto = "auto"
    rich = "rich"
    plain = "plain"
    json = "json"
    none = "none"


class SplitName(str, Enum):
    test = "test"
    validation = "validation"


class Mode(str, Enum):
    min = "min"
    max = "max"


class Sampler(str, Enum):
    tpe = "tpe"
    random = "random"


class Pruner(str, Enum):
    median = "median"
    none = "none"


class ExportFormat(str, Enum):
    saved_model = "saved_model"
    tflite = "tflite"
    onnx = "onnx"


SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a config key: dotted.key=value (YAML value). Repeatable.")
]
TrustOption = Annotated[
    bool, typer.Option("--trust", help="Use a run folder that your kerasrun did not sign (someone else's, or edited): it may run code.")
]
RunsDirOption = Annotated[Path | None, typer.Option("--runs-dir", help="Where run folders are (default: runs).")]
RunTargets = Annotated[
    list[Path], typer.Argument(metavar="RUN...", help="Run folders, or configs (each one's newest completed run, as evaluate finds it).")
]
