"""The installed command in real processes: --help stays light, a smoke run works, exit codes reach the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO, modules_loaded_by, only_run

from kerasrun.rundir.io import read_json

PY = sys.executable


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m kerasrun ARGS` and capture its output."""
    return subprocess.run(
        [PY, "-m", "kerasrun", *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=300
    )


def test_help_does_not_import_tensorflow() -> None:
    loaded = modules_loaded_by(
        "from typer.testing import CliRunner\nfrom kerasrun.cli import app\nassert CliRunner().invoke(app, ['--help']).exit_code == 0"
    )
    assert "kerasrun.cli" in loaded
    assert not {"tensorflow", "keras"} & loaded


def test_validate_and_show_do_not_import_tensorflow(tmp_path) -> None:
    config = REPO / "configs" / "digits_mlp.yaml"
    code = (
        "from typer.testing import CliRunner\nfrom kerasrun.cli import app\n"
        f"assert CliRunner().invoke(app, ['validate', {str(config)!r}]).exit_code == 0\n"
        f"assert CliRunner().invoke(app, ['show', {str(config)!r}]).exit_code == 0\n"
        "assert CliRunner().invoke(app, ['schema']).exit_code == 0"
    )
    assert not {"tensorflow", "keras"} & modules_loaded_by(code)


def gc_and_path_after_import(configure: bool) -> tuple[str, int, bool]:
    """In a fresh interpreter: is the collector on, how many objects are frozen, is the cwd on sys.path."""
    setup = "from kerasrun.startup import configure_command_process\nconfigure_command_process()\n" if configure else ""
    code = setup + "import gc, os, sys\nfrom kerasrun._tf import tf\nprint(gc.isenabled(), gc.get_freeze_count(), os.getcwd() in sys.path)"
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO / "bench")
    enabled, frozen, on_path = out.stdout.split()
    return enabled, int(frozen), on_path == "True"


def test_the_command_imports_tensorflow_with_its_objects_frozen_a_library_import_changes_nothing() -> None:
    enabled, frozen, on_path = gc_and_path_after_import(configure=True)  # what cli.main() does first
    assert enabled == "True" and frozen > 100_000 and on_path  # TensorFlow's and Keras's import-time objects
    enabled, frozen, on_path = gc_and_path_after_import(configure=False)  # `import kerasrun...` from a program
    assert enabled == "True" and frozen == 0 and not on_path


def test_help_in_a_real_process() -> None:
    out = run(["--help"])
    assert out.returncode == 0 and "train" in out.stdout and "Exit codes" in out.stdout


def test_smoke_train_in_a_real_process(write_config, tmp_path) -> None:
    runs = tmp_path / "runs"
    out = run(["train", str(write_config()), "--smoke", "--runs-dir", str(runs)])
    assert out.returncode == 0, out.stderr
    assert "epoch 1/1" in out.stdout and "\r" not in out.stdout  # stdout is a pipe: plain lines
    assert read_json(only_run(runs) / "run.json")["status"] == "completed"
    assert "oneDNN" not in out.stderr and "cuda" not in out.stderr.lower()  # TensorFlow's start-up noise is kept off
    assert "warning" not in out.stderr.lower(), out.stderr  # a first run is clean: curves.png drawn (matplotlib is a dependency)
    assert (only_run(runs) / "curves.png").is_file()


def test_config_error_exit_code_in_a_real_process(write_config, tmp_path) -> None:
    out = run(["train", str(write_config({"train": {"epochz": 2}})), "--runs-dir", str(tmp_path / "runs")])
    assert out.returncode == 2
    assert "train.epochz: unknown key" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(write_config, tmp_path) -> None:
    out = run(["--debug", "train", str(write_config({"train": {"epochz": 2}})), "--runs-dir", str(tmp_path / "runs")])
    assert out.returncode == 2 and "Traceback" in out.stderr
