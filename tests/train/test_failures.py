"""A training failure TensorFlow reports from inside its graph: one line with the op and the likely key, the stack only with --debug."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import only_run, train

from kerasrun.cli import app


def graph_failure_config(write_config, tmp_path: Path) -> Path:
    """A python source's tf.data.Dataset (its batches are not read before training) with AUC on a 10-class softmax and integer labels."""
    not_synthetic = {"generator": None, "means": None, "cov": None, "samples_per_class": None, "test_fraction": None}
    return write_config(
        {
            "data": {"source": "python", "function": "helpers_custom:blob_dataset", **not_synthetic},
            "model": {"layers": [{"Dense": {"units": 10, "activation": "softmax"}}]},
            "compile": {"metrics": [], "weighted_metrics": ["AUC"]},
            "train": {"epochs": 1, "validation_split": None, "stratify": False},
        }
    )


def test_a_graph_error_is_one_line_naming_the_op_and_the_key(runner, write_config, tmp_path, runs_dir) -> None:
    result = train(runner, graph_failure_config(write_config, tmp_path), runs_dir)
    assert result.exit_code == 1
    # The op's name takes a suffix (`UnsortedSegmentSum_1`) when the process traced one of that name before.
    expected = (
        r"training failed: InvalidArgumentError: TensorFlow op `UnsortedSegmentSum(_\d+)?` failed: data\.shape = \[10\] does not "
        r"start with segment_ids\.shape = \[100\] \(likely compile\.weighted_metrics; --debug shows TensorFlow's stack\)"
    )
    assert re.search(expected, result.output), result.output
    assert "Detected at node" not in result.output and 'File "' not in result.output and "Graph execution error" not in result.output
    error = json.loads((only_run(runs_dir) / "run.json").read_text())["error"]
    assert error.startswith("InvalidArgumentError: TensorFlow op `UnsortedSegmentSum") and "\n" not in error


def test_debug_shows_the_graph_stack(runner, write_config, tmp_path, runs_dir) -> None:
    config = graph_failure_config(write_config, tmp_path)
    result = runner.invoke(app, ["--debug", "train", str(config), "--runs-dir", str(runs_dir), "--progress", "plain"])
    assert result.exit_code == 1 and "Detected at node" in result.output
