"""Option types and options that several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

# Choices as Literal types: Typer shows them (`<auto|rich|…>`) and refuses other values exactly as it did the Enums.
Progress = Literal["auto", "rich", "plain", "json", "none"]
SplitName = Literal["test", "validation"]
Mode = Literal["auto", "min", "max"]
Sampler = Literal["tpe", "random"]
Pruner = Literal["median", "none"]
ExportFormat = Literal["saved_model", "tflite", "onnx"]

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
