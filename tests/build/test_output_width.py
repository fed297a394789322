"""A classification output's width against the labels: too narrow for sparse labels is refused, wider than needed is a note."""

from __future__ import annotations

import re

from helpers import only_run, train


def dense_head(units: int) -> dict:
    """TINY's model with `units` softmax outputs, the output layer named."""
    return {
        "model": {
            "inputs": {"x": [2]},
            "layers": [
                {"Dense": {"units": 8, "activation": "relu"}},
                {"Dense": {"units": units, "activation": "softmax", "name": "probs"}},
            ],
        }
    }


def test_an_output_too_narrow_for_the_labels_is_refused(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config(dense_head(2)), runs_dir)  # TINY's labels are 0, 1 and 2
    assert result.exit_code == 2, result.output
    assert "compile.loss: train targets for output `probs` go up to label 2, but the output has 2 units" in result.output
    assert "(give it at least 3 units)" in result.output and not list(runs_dir.iterdir())


def test_an_output_wider_than_the_labels_trains_with_a_one_line_note(runner, write_config, runs_dir) -> None:
    result = train(runner, write_config(dense_head(64)), runs_dir)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "has 64 units" in line]
    assert len(notes) == 1 and re.fullmatch(
        r"note: output `probs` has 64 units but the labels need 3 \(0\.\.2\): the other 61 are never a target "
        r"\(compile\.loss sparse_categorical_crossentropy\)",
        notes[0],
    ), result.output
    assert only_run(runs_dir).is_dir()
    exact = train(runner, write_config(dense_head(3), name="exact.yaml"), runs_dir / "exact")
    assert exact.exit_code == 0 and "units but the labels need" not in exact.output, exact.output
