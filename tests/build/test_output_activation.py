"""An output whose activation can't give what its loss reads (a linear layer under a probability loss, a softmax over one unit) gets a note."""

from __future__ import annotations

from typing import Any

from helpers import only_run, train

from kerasrun.cli import app


def head(*layers: dict[str, Any], loss: Any = "sparse_categorical_crossentropy") -> dict[str, Any]:
    """TINY with these layers after its hidden one, and `loss`."""
    return {
        "model": {"inputs": {"x": [2]}, "layers": [{"Dense": {"units": 8, "activation": "relu"}}, *layers]},
        "compile": {"loss": loss},
    }


def notes(output: str) -> list[str]:
    """The note lines of a command's output."""
    return [line for line in output.splitlines() if line.startswith("note: output")]


def test_a_linear_output_under_a_probability_loss_trains_with_a_note(runner, write_config, runs_dir) -> None:
    config = write_config(head({"Dense": {"units": 3, "name": "scores"}}))
    expected = [
        "note: output `scores` ends in a linear activation (layer `scores`), but compile.loss sparse_categorical_crossentropy "
        "reads it as probabilities: give the layer `activation: softmax`, or the loss `from_logits: true`"
    ]
    checked = runner.invoke(app, ["validate", "--build", str(config)])
    assert checked.exit_code == 0 and notes(checked.output) == expected, checked.output
    result = train(runner, config, runs_dir)
    assert result.exit_code == 0 and notes(result.output) == expected, result.output
    assert only_run(runs_dir).is_dir()


def test_logits_and_probabilities_the_loss_expects_get_no_note(runner, write_config) -> None:
    fine = {
        "from_logits": head({"Dense": {"units": 3}}, loss={"SparseCategoricalCrossentropy": {"from_logits": True}}),
        # Mixed precision's float32 cast after the softmax: the activation is the one before it.
        "cast": head({"Dense": {"units": 3, "activation": "softmax"}}, {"Activation": {"activation": "linear", "dtype": "float32"}}),
        "activation_layer": head({"Dense": {"units": 3}}, {"Activation": {"activation": "softmax"}}),
        "regression": head({"Dense": {"units": 3}}, loss="mse"),
    }
    for name, changes in fine.items():
        result = runner.invoke(app, ["validate", "--build", str(write_config(changes, name=f"{name}.yaml"))])
        assert result.exit_code == 0 and not notes(result.output), (name, result.output)


def test_a_softmax_over_one_unit_and_a_linear_binary_output_are_noted(runner, write_config) -> None:
    one_unit = runner.invoke(
        app,
        [
            "validate",
            "--build",
            str(write_config(head({"Dense": {"units": 1, "activation": "softmax", "name": "p"}}, loss="binary_crossentropy"))),
        ],
    )
    assert notes(one_unit.output) == [
        "note: output `p` is a softmax over 1 unit (layer `p`), which is always 1: "
        "use `activation: sigmoid` for one probability, or as many units as classes"
    ], one_unit.output
    # Through a Dropout, to the Dense that decides the values.
    linear = runner.invoke(
        app,
        [
            "validate",
            "--build",
            str(
                write_config(
                    head({"Dense": {"units": 1, "name": "d"}}, {"Dropout": {"rate": 0.1, "name": "drop"}}, loss="binary_crossentropy"),
                    name="b.yaml",
                )
            ),
        ],
    )
    assert [note.split(":")[1] for note in notes(linear.output)] == [
        " output `drop` ends in a linear activation (layer `d`), but compile.loss binary_crossentropy reads it as probabilities"
    ], linear.output
    assert "give the layer `activation: sigmoid`" in linear.output
