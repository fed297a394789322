"""`predict` to an output path it can't write and `evaluate` of a broken model.keras: located exit-2 errors, never exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_hostile import use_cases
from typer.testing import CliRunner

from kerasrun.cli import app

EXPECTED = {
    "predict-output-in-missing-folder": ["--output", "nowhere does not exist"],
    "predict-output-is-a-folder": ["--output", "is a folder"],
    "evaluate-truncated-model": ["model.keras", "not a complete .keras file"],
    "evaluate-empty-model": ["model.keras", "not a complete .keras file"],
    "evaluate-random-model": ["model.keras", "not a complete .keras file"],
    "evaluate-mismatched-model": ["model.keras", "cannot load the model"],
    "evaluate-model-is-a-fifo": ["model.keras", "a FIFO (named pipe)"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_broken_output_path_or_model_is_a_located_error(name: str, good_run: Path, tmp_path: Path, guard: None) -> None:
    args = use_cases(good_run)[name](tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in EXPECTED[name]:
        assert needle in result.stderr, result.stderr
    assert not list(tmp_path.glob("**/out.npy*")) or (tmp_path / "out.npy").is_dir()  # nothing written


def test_every_use_case_has_an_expectation(good_run: Path) -> None:
    assert set(use_cases(good_run)) == set(EXPECTED)
