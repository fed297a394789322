"""`kerasrun evaluate`, `predict` and `export`: use a completed run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kerasrun.cli.options import ExportFormat, SetOption, SplitName, TrustOption
from kerasrun.cli.render import err_console, json_stdout, print_metrics, reported_errors, silently, tell, warn_unreadable


def evaluate(
    target: Annotated[Path, typer.Argument(metavar="RUN_DIR|CONFIG", help="A run folder, or a config (its newest completed run).")],
    split: Annotated[SplitName, typer.Option("--split", help="Which data to score.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as one JSON object.")] = False,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Where to look for runs of a CONFIG.")] = None,
    set_: SetOption = None,
    trust: TrustOption = False,
) -> None:
    """Score a completed run's model (loaded with Keras safe_mode) on its test or validation data."""
    with reported_errors(silently), json_stdout(as_json):
        from kerasrun.rundir.remote import local_run_dir, url_of
        from kerasrun.runs.find import find_run_dir

        if url := url_of(target):  # a run folder on gs://…: scored from a local copy of it (its weights, config, classes)
            target = local_run_dir(url, "RUN_DIR", skip=("checkpoints", "tensorboard", "cache", "export"))
        run_dir, unreadable, other = find_run_dir(target, runs_dir, list(set_ or []))
        warn_unreadable(unreadable)
        if other:
            tell(other)
        from kerasrun.use.evaluate import evaluate_run

        metrics = evaluate_run(run_dir, split, trust)
    print_metrics(f"{split} metrics ({run_dir.name})", metrics, as_json)


def predict(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A completed run folder.")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Features: .npy, .npz or .csv.")],
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Predictions: .npy, .npz or .csv.")],
    trust: TrustOption = False,
) -> None:
    """Predict with a run's saved model, applying the run's feature preprocessing."""
    with reported_errors(silently):
        from kerasrun.rundir.opened import read_run_info
        from kerasrun.rundir.remote import local_run_dir, url_of

        if url := url_of(run_dir):  # a run folder on gs://…: its model from a local copy
            run_dir = local_run_dir(url, "RUN_DIR", skip=("checkpoints", "tensorboard", "cache", "export"))
        read_run_info(run_dir)
        from kerasrun.use.predict import predict_run

        shape = predict_run(run_dir, input_path, output_path, trust)
    shapes = ", ".join(f"{name} {each}" for name, each in shape.items()) if isinstance(shape, dict) else str(shape)
    typer.echo(f"wrote predictions {shapes} to {output_path}")


def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A completed run folder.")],
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="SavedModel, TFLite (LiteRT) or ONNX (the `onnx` extra).")
    ] = "saved_model",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: RUN_DIR/export/saved_model, model.tflite or model.onnx)."),
    ] = None,
    trust: TrustOption = False,
) -> None:
    """Export a run's model with its feature preprocessing inside: it takes raw inputs and gives `predict`'s outputs."""
    with reported_errors(silently):
        from kerasrun.rundir.opened import read_run_info
        from kerasrun.rundir.remote import local_run_dir, url_of

        target: Path | str | None = url_of(output) if output is not None else None
        if url := url_of(run_dir):  # exported from a local copy; by default into the remote folder's export/
            run_dir = local_run_dir(url, "RUN_DIR", skip=("checkpoints", "tensorboard", "cache", "export"))
            from kerasrun.use.artifacts import DEFAULT_NAME

            target = target or f"{url}/export/{DEFAULT_NAME[fmt]}"
        read_run_info(run_dir)
        from kerasrun.use.export import export_run

        result = export_run(run_dir, fmt, target or output, trust)
    steps = f" with preprocessing: {'; '.join(result.steps)}" if result.steps else ""
    if len(result.inputs) > 1:
        inputs = "inputs " + ", ".join(f"{each.name} {each.shape_text()} {each.dtype}" for each in result.inputs)
    else:
        inputs = "".join(f"input {each.shape_text()} {each.dtype}" for each in result.inputs)
    outputs = (
        f"; outputs in order: {', '.join(f'{each.name} {each.shape_text()}' for each in result.outputs)}" if len(result.outputs) > 1 else ""
    )
    typer.echo(f"exported {result.format} to {result.path}: {inputs}{steps}{outputs}")
    if result.max_abs_diff is None:
        err_console().print("note: not checked against the Keras model (no raw samples, or onnxruntime is not installed)", markup=False)
    else:
        typer.echo(f"checked on raw samples: max difference from `kerasrun predict` {result.max_abs_diff:.2g}")


COMMANDS = {"evaluate": evaluate, "predict": predict, "export": export}  # name: function, in `--help` order
