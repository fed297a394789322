"""Managing runs: `kerasrun runs`, `compare`, `plot`, curves.png after training, and stdout that scripts can parse."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import TINY, kerasrun_process, modules_loaded_by, train
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.rundir.io import read_json, write_json_atomic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Runs:
    """The run folders this module's tests read, trained once."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.runs_dir = base / "runs"
        self.config = base / "tiny.yaml"
        self.folders: dict[str, Path] = {}
        self.json_progress: subprocess.CompletedProcess | None = None

    def folder(self, name: str) -> Path:
        """The run folder whose run.json names `name`."""
        return self.folders[name]


def run_named(runs_dir: Path, name: str) -> Path:
    """The one run folder under runs_dir whose run.json has this name."""
    found = [p for p in runs_dir.iterdir() if (p / "run.json").is_file() and read_json(p / "run.json").get("name") == name]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Three real tiny runs (fit lr 0.01 in a real process with --progress json, custom lr 0.05, fit without curves),
    a crashed run (status running, its process gone), an unreadable folder and a folder that is not a run."""
    made = Runs(tmp_path_factory.mktemp("manage"))
    made.config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "loop": "fit"}}, sort_keys=False))  # not auto: two loops
    train_args = ["train", str(made.config), "--runs-dir", str(made.runs_dir)]
    made.json_progress = kerasrun_process([*train_args, "--progress", "json", "--name", "tiny-a"])
    assert made.json_progress.returncode == 0, made.json_progress.stderr
    # tiny-c is compared number for number with tiny-a, so it too trains in a fresh process: in-process, whatever
    # earlier tests of the session left in TensorFlow's global state could change the numbers.
    off = kerasrun_process([*train_args, "--progress", "none", "--name", "tiny-c", "--set", "output.curves=false"])
    assert off.returncode == 0, off.stderr
    settings = ["--set", "compile.optimizer.Adam.learning_rate=0.05", "--set", "train.loop=custom"]
    result = train(CliRunner(), made.config, made.runs_dir, "--name", "tiny-b", *settings)
    assert result.exit_code == 0, result.output
    for name in ("tiny-a", "tiny-b", "tiny-c"):
        made.folders[name] = run_named(made.runs_dir, name)
    # A run whose process died without a word (kill -9, a lost machine): run.json still says running.
    dead = made.runs_dir / "00000000-000000-dead"
    shutil.copytree(made.folders["tiny-a"], dead)
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    info = read_json(dead / "run.json")
    info.update(name="dead", status="running", ended=None, pid=pid, host=platform.node(), pid_started=None)
    for key in ("metrics", "timings", "epochs_completed"):
        info.pop(key)
    write_json_atomic(dead / "run.json", info)
    (dead / "metrics.json").unlink()
    made.folders["dead"] = dead
    corrupt = made.runs_dir / "zz-corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text('{"name": "half a fi')
    (corrupt / "config.yaml").write_text("name: x\n")
    made.folders["corrupt"] = corrupt
    (made.runs_dir / "notes").mkdir()  # not a run folder: no run.json, no config.yaml
    (made.runs_dir / "notes" / "todo.txt").write_text("try a bigger model\n")
    return made


def invoke(*args: str) -> Any:
    """`kerasrun ARGS` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(app, list(args))


def listing(runs: Runs, *args: str) -> list[dict[str, Any]]:
    """`kerasrun runs --json` parsed."""
    result = invoke("runs", "--runs-dir", str(runs.runs_dir), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_lists_every_run_folder_with_its_status_epochs_loop_and_metrics(runs: Runs) -> None:
    listed = listing(runs)
    trained = sorted(("tiny-a", "tiny-b", "tiny-c"), key=lambda name: runs.folder(name).name)  # folder order: start order
    loops = {"tiny-a": "fit", "tiny-b": "custom", "tiny-c": "fit"}
    assert [(r["name"], r["status"], r["epochs"], r["loop"]) for r in listed] == [
        ("dead", "crashed", 3, "fit"),  # a `running` run whose process is gone
        *((name, "completed", 3, loops[name]) for name in trained),
        (None, "unreadable", None, None),
    ]
    assert [Path(r["path"]).name for r in listed] == sorted(Path(r["path"]).name for r in listed)
    by_name = {r["name"]: r for r in listed}
    for name in ("tiny-a", "tiny-b", "tiny-c"):
        folder = runs.folder(name)
        row = by_name[name]
        assert row["path"] == str(folder)
        assert row["planned_epochs"] == 3 and row["device"] == "/CPU:0" and row["problems"] == []
        assert row["monitor"] == "val_loss"
        assert row["monitor_value"] == read_json(folder / "history.json")["val_loss"][-1]
        assert row["metrics"] == read_json(folder / "metrics.json")
        assert row["started"] == read_json(folder / "run.json")["started"] and row["duration_s"] >= 0
    assert by_name["dead"]["metrics"] is None
    assert "is not valid JSON" in listed[-1]["problems"][0] and listed[-1]["path"] == str(runs.folder("corrupt"))


def test_runs_filters_by_status_and_name(runs: Runs) -> None:
    assert [r["name"] for r in listing(runs, "--status", "crashed")] == ["dead"]
    assert sorted(r["name"] for r in listing(runs, "--status", "completed", "--name", "tiny-[ab]")) == ["tiny-a", "tiny-b"]
    assert [r["name"] for r in listing(runs, "--status", "crashed,unreadable")] == ["dead", None]
    assert [r["name"] for r in listing(runs, "--name", "*-c")] == ["tiny-c"]
    assert listing(runs, "--name", "nothing-*") == []
    assert listing(runs, "--status", "pruned") == []  # a sweep trial's status: a filter like the others
    result = invoke("runs", "--runs-dir", str(runs.runs_dir), "--status", "finished")
    assert result.exit_code == 2 and "unknown status finished" in result.stderr and "completed" in result.stderr
    result = invoke("runs", "--runs-dir", str(runs.base / "nowhere"))
    assert result.exit_code == 2 and "no such folder" in result.stderr and not result.stdout


def test_runs_prints_a_plain_table_when_stdout_is_not_a_terminal(runs: Runs) -> None:
    result = invoke("runs", "--runs-dir", str(runs.runs_dir))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "name", "status", "started", "duration", "epochs", "loop", "device", "monitored", "test"]
    assert len(lines) == 6 and "─" not in result.stdout and "\x1b" not in result.stdout
    assert lines[1].split()[:3] == ["00000000-000000-dead", "dead", "crashed"]
    row_b = next(line for line in lines if " tiny-b " in line)
    assert " 3/3 " in row_b and " custom " in row_b and "val_loss=" in row_b
    assert lines[-1].startswith("zz-corrupt") and "unreadable" in lines[-1] and "is not valid JSON" in lines[-1]


def test_compare_shows_the_config_keys_that_differ_and_metric_deltas(runs: Runs) -> None:
    a, b = runs.folder("tiny-a"), runs.folder("tiny-b")
    result = invoke("compare", str(a), str(b), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["name"] for r in out["runs"]] == ["tiny-a", "tiny-b"]
    assert {row["key"]: row["values"] for row in out["config"]} == {
        "name": ["tiny-a", "tiny-b"],
        "compile.optimizer.Adam.learning_rate": [0.01, 0.05],
        "train.loop": ["fit", "custom"],
    }
    assert {row["key"]: row["values"] for row in out["environment"]} == {"loop": ["fit", "custom"]}
    history_a, history_b = read_json(a / "history.json"), read_json(b / "history.json")
    rows = {(row["kind"], row["metric"]): row for row in out["metrics"]}
    final = rows[("final", "val_loss")]
    assert final["values"] == [history_a["val_loss"][-1], history_b["val_loss"][-1]]
    assert final["deltas"] == [0.0, history_b["val_loss"][-1] - history_a["val_loss"][-1]]
    best = rows[("best", "val_sparse_categorical_accuracy")]
    assert best["mode"] == "max" and best["values"][1] == max(history_b["val_sparse_categorical_accuracy"])
    assert best["epochs"][1] == history_b["val_sparse_categorical_accuracy"].index(best["values"][1]) + 1
    assert rows[("best", "val_loss")]["values"][0] == min(history_a["val_loss"])
    test = rows[("test", "sparse_categorical_accuracy")]
    assert test["values"] == [
        read_json(a / "metrics.json")["sparse_categorical_accuracy"],
        read_json(b / "metrics.json")["sparse_categorical_accuracy"],
    ]
    text = invoke("compare", str(a), str(b))
    assert text.exit_code == 0 and "compile.optimizer.Adam.learning_rate" in text.stdout and "Δ#2" in text.stdout
    assert "output.checkpoint" not in text.stdout  # identical keys are hidden


def test_compare_hides_identical_keys_and_refuses_bad_arguments(runs: Runs) -> None:
    out = json.loads(invoke("compare", str(runs.folder("tiny-a")), str(runs.folder("tiny-c")), "--json").stdout)
    assert [row["key"] for row in out["config"]] == ["name", "output.curves"]
    assert out["environment"] == []
    assert all(row["deltas"][1] == 0.0 for row in out["metrics"])  # the same training: curves.png changes no number
    one = invoke("compare", str(runs.folder("tiny-a")))
    assert one.exit_code == 2 and "at least two runs" in one.stderr
    # An unreadable run is one row saying why; the others are compared (#23).
    broken = invoke("compare", str(runs.folder("tiny-a")), str(runs.folder("corrupt")))
    assert broken.exit_code == 0 and "Traceback" not in broken.output, broken.output
    assert "unreadable: " in broken.stdout and "run.json" in broken.stdout and "is not valid JSON" in broken.stdout
    only_broken = invoke("compare", str(runs.folder("corrupt")), str(runs.folder("corrupt")))
    assert only_broken.exit_code == 2 and "run.json" in only_broken.stderr and "Traceback" not in only_broken.output
    by_config = invoke("compare", str(runs.config), str(runs.folder("tiny-a")), "--runs-dir", str(runs.runs_dir))
    assert by_config.exit_code == 2 and "no completed run named `tiny`" in by_config.stderr


def test_compare_and_plot_find_a_configs_newest_completed_run_as_evaluate_does(runs: Runs, tmp_path: Path) -> None:
    config_b = tmp_path / "b.yaml"
    config_b.write_text(yaml.safe_dump(dict(TINY, name="tiny-b"), sort_keys=False))
    result = invoke("compare", str(config_b), str(runs.folder("tiny-a")), "--runs-dir", str(runs.runs_dir), "--json")
    assert result.exit_code == 0, result.output
    assert [run["path"] for run in json.loads(result.stdout)["runs"]] == [str(runs.folder("tiny-b")), str(runs.folder("tiny-a"))]
    # tiny-b was trained with two --set overrides that b.yaml lacks: its keys are named (on stderr, stdout is JSON).
    assert "they differ at compile.optimizer.Adam.learning_rate, train.loop" in result.stderr and "note:" not in result.stdout
    plotted = invoke("plot", str(config_b), "--runs-dir", str(runs.runs_dir), "-o", str(tmp_path / "b.png"))
    assert plotted.exit_code == 0 and (tmp_path / "b.png").read_bytes()[:8] == PNG_MAGIC


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_writes_png_svg_and_pdf(runs: Runs, tmp_path: Path) -> None:
    folders = [str(runs.folder(name)) for name in ("tiny-a", "tiny-b")]
    result = invoke("plot", *folders, "-o", str(tmp_path / "curves.png"))
    assert result.exit_code == 0, result.output
    data = (tmp_path / "curves.png").read_bytes()
    assert png_size(data) == (1000, 340)  # two panels (loss, accuracy) of 5 × 3.4 inches at 100 dpi
    assert 10_000 < len(data) < 1_000_000
    assert invoke("plot", *folders, "-o", str(tmp_path / "c.svg"), "--metric", "val_loss").exit_code == 0
    svg = (tmp_path / "c.svg").read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    assert invoke("plot", *folders, "-o", str(tmp_path / "c.pdf")).exit_code == 0
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
    one_panel = invoke("plot", folders[0], "-o", str(tmp_path / "loss.png"), "-m", "loss")
    assert one_panel.exit_code == 0 and png_size((tmp_path / "loss.png").read_bytes()) == (500, 340)


def test_plot_refuses_unknown_metrics_and_formats_writing_nothing(runs: Runs, tmp_path: Path) -> None:
    folder = str(runs.folder("tiny-a"))
    result = invoke("plot", folder, "-o", str(tmp_path / "c.png"), "--metric", "accuracy")
    assert result.exit_code == 2 and "no run recorded `accuracy`" in result.stderr and "sparse_categorical_accuracy" in result.stderr
    result = invoke("plot", folder, "-o", str(tmp_path / "c.jpg"))
    assert result.exit_code == 2 and "use .png, .svg or .pdf" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_training_writes_curves_png_unless_turned_off_and_leaves_the_numbers_alone(runs: Runs) -> None:
    a, c = runs.folder("tiny-a"), runs.folder("tiny-c")
    assert png_size((a / "curves.png").read_bytes()) == (1000, 340)
    assert not (c / "curves.png").exists()
    assert "curves_s" in read_json(a / "run.json")["timings"] and "curves_s" not in read_json(c / "run.json")["timings"]
    assert (a / "history.json").read_bytes() == (c / "history.json").read_bytes()
    assert (a / "metrics.json").read_bytes() == (c / "metrics.json").read_bytes()
    assert not list(a.glob(".*.tmp"))  # written atomically: no temp file left


def test_training_without_matplotlib_warns_once_and_completes(monkeypatch: pytest.MonkeyPatch, write_config: Any, runs_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib…` now raises ImportError, as when it is not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = train(CliRunner(), write_config({"train": {"epochs": 1}}), runs_dir)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["warning: no curves.png: matplotlib is not installed (pip install 'kerasrun[plot]', or set output.curves: false)"]
    (run_dir,) = runs_dir.iterdir()
    assert read_json(run_dir / "run.json")["status"] == "completed" and not (run_dir / "curves.png").exists()


def test_progress_json_prints_only_json_lines_on_stdout(runs: Runs) -> None:
    assert runs.json_progress is not None
    lines = runs.json_progress.stdout.splitlines()
    records = [json.loads(line) for line in lines]  # every stdout line is JSON
    assert [r.get("epoch") for r in records] == [1, 2, 3, None]
    assert records[-1] == read_json(runs.folder("tiny-a") / "metrics.json")
    assert "run folder:" in runs.json_progress.stderr and "done:" in runs.json_progress.stderr


def test_evaluate_json_prints_only_json(runs: Runs) -> None:
    out = kerasrun_process(["evaluate", str(runs.folder("tiny-a")), "--json"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == pytest.approx(read_json(runs.folder("tiny-a") / "metrics.json"))


def test_runs_compare_and_plot_do_not_import_tensorflow(runs: Runs, tmp_path: Path) -> None:
    a, b = runs.folder("tiny-a"), runs.folder("tiny-b")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom kerasrun.cli import app\n"
        f"assert CliRunner().invoke(app, ['runs', '--runs-dir', {str(runs.runs_dir)!r}]).exit_code == 0\n"
        f"assert CliRunner().invoke(app, ['compare', {str(a)!r}, {str(b)!r}]).exit_code == 0\n"
        f"assert CliRunner().invoke(app, ['plot', {str(a)!r}, '-o', {str(tmp_path / 'c.png')!r}]).exit_code == 0"
    )
    loaded = modules_loaded_by(code)
    assert "kerasrun.runs.listing" in loaded and "matplotlib" in loaded
    assert not {"tensorflow", "keras"} & loaded


def test_shell_completion_is_available() -> None:
    result = invoke("--help")
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    # Typer detects the shell from the process's ancestors, which a test runner need not have: name it instead (Typer's test hook).
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "kerasrun", "--show-completion", "bash"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0 and "complete" in out.stdout and "COMP_WORDS" in out.stdout


def test_plot_in_the_terminal_draws_each_metric_as_text(runs: Runs) -> None:
    from kerasrun.runs.plot import load_curves, plot_in_terminal

    pytest.importorskip("plotext")
    text = plot_in_terminal(load_curves([runs.folder("tiny-a")])[0], ["loss", "sparse_categorical_accuracy"], width=100)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "loss" in plain and "sparse_categorical_accuracy" in plain and "epoch" in plain
    assert f"{runs.folder('tiny-a').name} val" in plain  # the legend names each run by its folder


def test_runs_reads_a_hand_edited_config_and_the_monitor_of_its_callbacks(tmp_path: Path) -> None:
    from kerasrun.runs.listing import list_runs

    edited = tmp_path / "20260101-000000-edited"
    edited.mkdir()
    (edited / "run.json").write_text(json.dumps({"name": "edited", "status": "completed", "epochs_completed": 2}))
    # flow style, not the block layout kerasrun writes: the whole file is parsed instead of the `train:` lines
    (edited / "config.yaml").write_text("name: edited\ntrain: {epochs: 9, callbacks: [{EarlyStopping: {monitor: val_acc}}]}\n")
    (edited / "history.json").write_text(json.dumps({"epoch": [1, 2], "loss": [0.9, 0.5], "val_acc": [0.6, 0.7]}))
    block = tmp_path / "20260101-000001-block"
    block.mkdir()
    (block / "run.json").write_text(json.dumps({"name": "block", "status": "failed"}))
    (block / "config.yaml").write_text(
        "name: block\ntrain:\n  epochs: 4\n  callbacks:\n  - ReduceLROnPlateau: {factor: 0.5}\noutput:\n  curves: true\n"
    )
    (block / "history.json").write_text(json.dumps({"epoch": [1], "loss": [0.9], "val_loss": [0.8]}))
    first, second = list_runs(tmp_path)
    assert (first.name, first.epochs, first.planned_epochs, first.monitor, first.monitor_value) == ("edited", 2, 9, "val_acc", 0.7)
    assert (second.name, second.epochs, second.planned_epochs, second.monitor, second.monitor_value) == ("block", 1, 4, "val_loss", 0.8)
    assert second.metrics is None and second.problems == []


def test_runs_lists_the_trials_inside_a_sweep_folder(runs: Runs, tmp_path: Path) -> None:
    base = tmp_path / "runs"
    sweep = base / "20260101-000000-tiny-sweep"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"trials": []}))
    for trial in ("trial-001", "trial-000"):
        shutil.copytree(runs.folder("tiny-a"), sweep / trial)
    shutil.copytree(runs.folder("tiny-b"), base / "20270101-000000-tiny-b")
    (sweep / "notes").mkdir()  # inside a sweep folder too, a folder that is not a run is left out
    listed = listing(Runs(tmp_path), "--name", "*")
    assert [(r["folder"], r["name"], r["status"]) for r in listed] == [
        ("20260101-000000-tiny-sweep/trial-000", "tiny-a", "completed"),
        ("20260101-000000-tiny-sweep/trial-001", "tiny-a", "completed"),
        ("20270101-000000-tiny-b", "tiny-b", "completed"),
    ]
    assert [r["folder"] for r in listing(Runs(tmp_path), "--name", "*-sweep/trial-001")] == ["20260101-000000-tiny-sweep/trial-001"]
    table = invoke("runs", "--runs-dir", str(base)).stdout.splitlines()
    assert table[1].startswith("20260101-000000-tiny-sweep/trial-000 ")


def test_a_resumed_runs_duration_leaves_out_the_time_it_stood_stopped() -> None:
    from kerasrun.runs.listing import run_duration

    info: dict[str, Any] = {"started": "2026-12-07T10:00:00+00:00", "ended": "2026-12-07T12:00:30+00:00"}
    assert run_duration(info, "completed") == 7230.0  # never resumed: start to end
    # Interrupted at 10:00:20, resumed two hours later, ended 30 s after that: 50 s of training.
    info["resumes"] = [{"time": "2026-12-07T12:00:00+00:00", "previous_ended": "2026-12-07T10:00:20+00:00"}]
    assert run_duration(info, "completed") == 50.0
    info["resumes"].insert(0, {"time": "2026-12-07T09:00:00+00:00"})  # a record from before previous_ended: its gap stays in
    assert run_duration(info, "completed") == 50.0
    running = run_duration({"started": "2026-12-07T10:00:00+00:00", "resumes": info["resumes"]}, "running")
    assert running is not None and running > 50.0  # until now


def test_resume_records_when_the_process_before_it_ended(tmp_path: Path) -> None:
    from kerasrun.rundir.record import RunRecord

    write_json_atomic(tmp_path / "run.json", {"name": "x", "status": "interrupted", "started": "a", "ended": "2026-12-07T10:00:20+00:00"})
    record = RunRecord.reopen(tmp_path, from_epoch=1, command=["kerasrun", "resume"])
    assert record.info["resumes"][-1]["previous_ended"] == "2026-12-07T10:00:20+00:00" and record.info["ended"] is None
