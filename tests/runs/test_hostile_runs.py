"""Hostile run folders — FIFOs, links to /dev/zero, 40,000-deep JSON, an alias bomb, a bad pid or a naive time — are one
`unreadable: why` row of `runs`, `compare` and `plot` (or read as they are), and the other runs are listed; never a hang or exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers_hostile import RUN_BREAKERS, run_folders
from typer.testing import CliRunner

from kerasrun.cli import app

COMMANDS = ("runs", "compare", "plot")
# What each broken run is to each command: `unreadable` (a row saying why, the rest listed) or `read` (its files serve).
UNREADABLE: dict[str, set[str]] = {
    "run.json-fifo": {"runs", "compare"},  # plot draws history.json alone
    "history.json-fifo": {"runs", "compare", "plot"},
    "config.yaml-fifo": {"runs", "compare"},
    "config.yaml-alias-bomb": {"runs", "compare"},
    "run.json-dev-zero": {"runs", "compare"},
    "history.json-dev-zero": {"runs", "compare", "plot"},
    "run.json-deep": {"runs", "compare"},
    "history.json-deep": {"runs", "compare", "plot"},
    "metrics.json-deep": {"compare"},  # runs shows run.json's copy of the test metrics
    "pid-not-a-number": set(),
    "pid-huge": set(),
    "timestamp-naive": set(),
    "timestamps-mixed": set(),
}
WHY = {  # what the unreadable row says
    "fifo": "a FIFO (named pipe), not a regular file",
    "dev-zero": "a device, not a regular file",
    "deep": "nested more than 64 levels deep",
    "alias-bomb": "an alias bomb",
}


def test_every_breaker_has_an_expectation() -> None:
    assert set(UNREADABLE) == set(RUN_BREAKERS)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("breaker", sorted(RUN_BREAKERS))
def test_a_hostile_run_folder_is_one_row_and_the_rest_is_listed(
    breaker: str, command: str, good_run: Path, tmp_path: Path, guard: None
) -> None:
    runs = run_folders(tmp_path, good_run, RUN_BREAKERS[breaker])
    folders = sorted(runs.iterdir())
    bad = runs / "20000101-000001-bad"
    args = {
        "runs": ["runs", "--runs-dir", str(runs), "--json"],
        "compare": ["compare", *map(str, folders), "--json"],
        "plot": ["plot", *map(str, folders), "-o", str(tmp_path / "curves.png")],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    unreadable = command in UNREADABLE[breaker]
    why = next((text for key, text in WHY.items() if breaker.endswith(key)), "") if unreadable else ""
    if command == "runs":
        rows = {Path(row["path"]).name: row for row in json.loads(result.stdout)}
        assert sorted(rows) == [p.name for p in folders]
        assert rows["20000101-000000-good"]["status"] == rows["20000101-000002-good"]["status"] == "completed"
        assert (rows[bad.name]["status"] == "unreadable") is unreadable, rows[bad.name]
        assert why in " ".join(rows[bad.name]["problems"])
        plain = CliRunner().invoke(app, ["runs", "--runs-dir", str(runs)])  # the table: one row per folder
        assert plain.exit_code == 0 and len(plain.stdout.strip().splitlines()) == 1 + len(folders)
    elif command == "compare":
        shown = json.loads(result.stdout)
        assert [Path(item["path"]).name for item in shown["unreadable"]] == ([bad.name] if unreadable else [])
        assert len(shown["runs"]) == len(folders) - unreadable
        assert why in " ".join(item["problem"] for item in shown["unreadable"])
        table = CliRunner().invoke(app, ["compare", *map(str, folders)])
        assert table.exit_code == 0 and ("unreadable: " in table.stdout) is unreadable
    else:
        assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
        assert (f"{bad}: unreadable: " in result.stderr) is unreadable, result.stderr
        assert why in result.stderr


def test_compare_and_plot_of_only_unreadable_runs_exit_2(good_run: Path, tmp_path: Path, guard: None) -> None:
    runs = run_folders(tmp_path, good_run, RUN_BREAKERS["history.json-fifo"])
    bad = str(runs / "20000101-000001-bad")
    for args in (["compare", bad, bad], ["plot", bad, "-o", str(tmp_path / "c.png")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "unreadable: " in result.stderr and "FIFO" in result.stderr, result.output
    assert not (tmp_path / "c.png").exists()


def test_plot_of_a_run_stopped_before_its_first_epoch_says_so(good_run: Path, tmp_path: Path) -> None:
    early = tmp_path / "20000101-000009-early"
    shutil.copytree(good_run, early)
    (early / "history.json").unlink()  # what a run interrupted in its first epoch leaves
    result = CliRunner().invoke(app, ["plot", str(early), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "RUN: no epoch has ended yet: history.json is written at the end of each" in result.stderr, (
        result.output
    )
    drawn = CliRunner().invoke(app, ["plot", str(early), str(good_run), "-o", str(tmp_path / "d.png")])
    assert drawn.exit_code == 0 and f"warning: {early}: no epoch has ended yet" in drawn.stderr, drawn.output
