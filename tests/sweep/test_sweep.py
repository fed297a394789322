"""`kerasrun sweep`: trials in one process give a standalone `kerasrun train --set …`'s bytes; failures, signals, workers, Optuna."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import kerasrun_popen, modules_loaded_by, write_tiny
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

LR = "compile.optimizer.Adam.learning_rate"
GRID = ["--grid", f"{LR}=0.01,0.1", "--grid", "train.loop=fit,custom"]  # 4 trials: both loops, two trials of each
COMPARED = ("history.json", "summary.txt")  # summary.txt holds Keras's generated layer names: their counters must restart


def trial_folders(sweep: Path) -> dict[tuple[str, ...], Path]:
    """The trials' run folders by their overrides."""
    record = read_json(sweep / "sweep.json")
    return {tuple(t["overrides"]): sweep / t["run_dir"] for t in record["trials"]}


def only_sweep(runs: Path) -> Path:
    """The one sweep folder under a runs dir."""
    (sweep,) = [p for p in runs.iterdir() if p.name.endswith("-sweep")]
    return sweep


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 4-trial grid swept in one `kerasrun sweep` process, and trials 2-4 trained alone by `kerasrun train --set …`.

    Trials 2-4 are the ones that follow another in the sweep's process (the first one is compared
    through the --jobs test, where it is a worker's first trial). All run as real processes, at once.
    """
    folder = tmp_path_factory.mktemp("grid")
    config = write_tiny(folder)
    standalone: dict[tuple[str, ...], Path] = {}
    started = []
    for lr, loop in (("0.01", "custom"), ("0.1", "fit"), ("0.1", "custom")):
        overrides = (f"{LR}={lr}", f"train.loop={loop}")
        runs = folder / f"alone-{lr}-{loop}"
        args = ["train", str(config), "--runs-dir", str(runs), "--progress", "none"]
        started.append((overrides, runs, kerasrun_popen([*args, "--set", overrides[0], "--set", overrides[1]])))
    # The sweep in a real process too: this test process may hold TensorFlow state no command starts with
    # (another test's runtime.deterministic=true switched op determinism on for good, and it changes the numbers).
    sweep = kerasrun_popen(["sweep", str(config), *GRID, "--runs-dir", str(folder / "runs")])
    out, err = sweep.communicate(timeout=300)
    result = {"code": sweep.returncode, "stdout": out, "stderr": err}
    for overrides, runs, process in started:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        (standalone[overrides],) = list(runs.iterdir())
    return {"result": result, "sweep": only_sweep(folder / "runs"), "standalone": standalone, "config": config, "folder": folder}


def test_each_trial_is_byte_for_byte_a_standalone_train(grid_sweep: dict[str, Any]) -> None:
    assert grid_sweep["result"]["code"] == 0, grid_sweep["result"]["stderr"]
    trials = trial_folders(grid_sweep["sweep"])
    assert len(trials) == 4 and set(grid_sweep["standalone"]) < set(trials)
    for overrides, alone in grid_sweep["standalone"].items():
        run_dir = trials[overrides]
        for name in COMPARED:
            assert (run_dir / name).read_bytes() == (alone / name).read_bytes(), (overrides, name)
        info = read_json(run_dir / "run.json")
        assert info["status"] == "completed" and info["loop"] == overrides[1].partition("=")[2]
        assert info["command"][:3] == ["kerasrun", "train", str(grid_sweep["config"])]  # the equivalent standalone command


def test_sweep_json_ranks_the_trials_by_the_metric(grid_sweep: dict[str, Any]) -> None:
    record = read_json(grid_sweep["sweep"] / "sweep.json")
    assert record["status"] == "completed" and record["method"] == "grid" and record["metric"] == "val_loss"
    trials = record["trials"]
    assert [t["rank"] for t in trials] == [1, 2, 3, 4]
    values = [t["metric"] for t in trials]
    assert values == sorted(values)
    for trial in trials:
        history = read_json(grid_sweep["sweep"] / trial["run_dir"] / "history.json")
        assert trial["metric"] == min(history["val_loss"]) and trial["epochs"] == 3 and trial["status"] == "completed"
        assert trial["params"][LR] in (0.01, 0.1)
    assert record["best"]["run_dir"] == trials[0]["run_dir"]
    output = grid_sweep["result"]["stdout"]
    assert "rank" in output and "best: trial" in output and "\x1b[" not in output  # not a terminal: a plain table


def test_jobs_2_gives_the_same_histories(grid_sweep: dict[str, Any]) -> None:
    runs = grid_sweep["folder"] / "jobs"
    result = CliRunner().invoke(app, ["sweep", str(grid_sweep["config"]), *GRID, "--jobs", "2", "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)  # --json: only JSON on stdout
    assert record["jobs"] == 2 and len(record["trials"]) == 4
    in_process = trial_folders(grid_sweep["sweep"])
    for overrides, run_dir in trial_folders(only_sweep(runs)).items():
        assert (run_dir / "history.json").read_bytes() == (in_process[overrides] / "history.json").read_bytes(), overrides
    assert {read_json(p / "run.json")["pid"] for p in trial_folders(only_sweep(runs)).values()}.isdisjoint({os.getpid()})


def test_print_commands_prints_one_train_per_trial_and_writes_nothing(tmp_path: Path) -> None:
    config = write_tiny(tmp_path)
    runs = tmp_path / "runs"
    args = ["sweep", "tiny.yaml", *GRID, "--set", "train.epochs=2", "--runs-dir", "runs", "--print-commands"]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # typed as relative paths, printed as absolute ones: a scheduler's task starts anywhere
    try:
        result = CliRunner().invoke(app, args)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and not runs.exists()
    sweep_dir = str(runs.resolve() / "tiny-sweep")
    assert shlex.split(lines[0]) == [
        sys.executable, "-m", "kerasrun", "train", str(config.resolve()), "--set", "train.epochs=2", "--set", f"{LR}=0.01",
        "--set", "train.loop=fit", "--runs-dir", sweep_dir, "--name", "trial-000",
    ]  # fmt: skip
    assert shlex.split(lines[3])[-6:] == ["--set", "train.loop=custom", "--runs-dir", sweep_dir, "--name", "trial-003"]


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 2}})
    result = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=1.0e+30,0.05", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    record = read_json(only_sweep(tmp_path / "runs") / "sweep.json")
    by_lr = {t["params"][LR]: t for t in record["trials"]}
    assert by_lr[1e30]["status"] == "diverged" and "NaN or inf" in by_lr[1e30]["error"] and by_lr[1e30]["rank"] is None
    assert read_json(only_sweep(tmp_path / "runs") / by_lr[1e30]["run_dir"] / "run.json")["status"] == "diverged"
    assert by_lr[0.05]["status"] == "completed" and by_lr[0.05]["rank"] == 1 and record["best"]["params"] == {LR: 0.05}


def test_bad_grid_keys_and_values_exit_2_before_anything_runs(tmp_path: Path) -> None:
    config = write_tiny(tmp_path)
    runs = tmp_path / "runs"
    args = ["sweep", str(config), "--grid", "train.epoch=1,2", "--grid", "train.batch_size=8,big", "--grid", f"{LR}=0.1,1e-3"]
    result = CliRunner().invoke(app, [*args, "--runs-dir", str(runs)])
    assert result.exit_code == 2 and not runs.exists()
    assert "3 problems found" in result.output  # every problem at once, each once
    assert "train.epoch" in result.output and "big" in result.output and "1e-3` is text to YAML" in result.output
    typo = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR.replace('learning_rate', 'learning_rat')}=0.1,0.2"])
    assert typo.exit_code == 2 and "is not in" in typo.output
    # A key inside a value given as a name (the optimizer as `adam`): one problem, at --grid.
    named_dir = tmp_path / "named"
    named_dir.mkdir()
    named_config = write_tiny(named_dir, {"compile": {"optimizer": "adam"}})
    named = CliRunner().invoke(app, ["sweep", str(named_config), "--grid", "compile.optimizer.Adam.learning_rate=0.1,0.2"])
    assert named.exit_code == 2 and "1 problem found" in named.output, named.output
    assert "--grid: compile.optimizer.Adam: cannot set a key inside `adam`: compile.optimizer is no mapping" in named.output
    both = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.1", "--random", "2", "--space", f"{LR}=uniform(0,1)"])
    assert both.exit_code == 2 and "can't be combined" in both.output
    dist = CliRunner().invoke(
        app, ["sweep", str(config), "--random", "2", "--space", f"{LR}=loguniform(0,1)", "--space", "seed=normal(1,2)"]
    )
    assert dist.exit_code == 2 and "loguniform needs low > 0" in dist.output and "not a distribution" in dist.output


def test_random_search_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    config = write_tiny(tmp_path)
    space = ["--space", f"{LR}=loguniform(1e-4,1e-1)", "--space", "train.batch_size=int(8,64)", "--space", "train.loop=choice(fit,custom)"]

    def commands(seed: str) -> list[str]:
        result = CliRunner().invoke(app, ["sweep", str(config), "--random", "5", *space, "--seed", seed, "--print-commands"])
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()

    first = commands("3")
    assert first == commands("3") and first != commands("4") and len(first) == 5
    for line in first:
        values = dict(item.split("=", 1) for item in shlex.split(line)[6:-4:2])
        assert 1e-4 <= yaml.safe_load(values[LR]) <= 1e-1 and isinstance(yaml.safe_load(values[LR]), float)
        assert 8 <= int(values["train.batch_size"]) <= 64 and values["train.loop"] in ("fit", "custom")


def test_optuna_search_prunes_bad_trials_by_epoch(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 4}})
    args = ["--optuna", "5", "--space", f"{LR}=loguniform(1e-4,1e-1)", "--prune-startup", "1", "--prune-warmup", "1", "--seed", "0"]
    result = CliRunner().invoke(app, ["sweep", str(config), *args, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    sweep = only_sweep(tmp_path / "runs")
    record = read_json(sweep / "sweep.json")
    assert record["method"] == "optuna" and record["sampler"] == "tpe" and len(record["trials"]) == 5
    pruned = [t for t in record["trials"] if t["status"] == "pruned"]
    assert pruned, record["trials"]
    for trial in pruned:
        info = read_json(sweep / trial["run_dir"] / "run.json")
        history = read_json(sweep / trial["run_dir"] / "history.json")
        assert info["status"] == "pruned" and info["pruned"]["epoch"] == trial["epochs"] == len(history["epoch"]) < 4
        assert info["checkpoint_epoch"] == trial["epochs"]  # like an interrupted run: resumable from what it completed
        assert trial["rank"] is None
    refused = CliRunner().invoke(app, ["evaluate", str(sweep / pruned[0]["run_dir"])])
    assert refused.exit_code == 2 and "the run was pruned by a sweep after" in refused.output, refused.output
    assert "continue it with `kerasrun resume" in refused.output  # as an interrupted run's
    completed = [t for t in record["trials"] if t["status"] == "completed"]
    assert completed and all(t["epochs"] == 4 for t in completed) and record["best"]["index"] in {t["index"] for t in completed}
    # A pruned trial continued by `kerasrun resume` completes in its folder: the sweep's listing reads it from there, ranked.
    continued = pruned[0]["run_dir"]
    assert CliRunner().invoke(app, ["resume", str(sweep / continued), "--progress", "none"]).exit_code == 0
    resumed = CliRunner().invoke(app, ["sweep", "--resume", str(sweep), "--json"])
    assert resumed.exit_code == 0, resumed.output
    after = {t["run_dir"]: t for t in json.loads(resumed.stdout)["trials"]}
    history = read_json(sweep / continued / "history.json")
    assert after[continued]["status"] == "completed" and after[continued]["epochs"] == 4 and after[continued]["rank"] is not None
    assert after[continued]["metric"] == min(history["val_loss"]) and after[continued]["error"] is None
    assert read_json(sweep / "sweep.json")["trials"] == json.loads(resumed.stdout)["trials"]


def wait_for_histories(process: subprocess.Popen[str], runs: Path, count: int) -> None:
    """Until `count` trials have finished an epoch (or the process ended, or two minutes passed)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(runs.glob("*-sweep/trial-*/history.json"))) >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"no trial trained an epoch: {process.communicate()[1]}")


def test_sigint_stops_a_real_sweep_cleanly(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 2000}})
    runs = tmp_path / "runs"
    process = kerasrun_popen(["sweep", str(config), "--grid", f"{LR}=0.01,0.02,0.03", "--runs-dir", str(runs)])
    wait_for_histories(process, runs, 1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    sweep = only_sweep(runs)
    record = read_json(sweep / "sweep.json")
    assert record["status"] == "interrupted" and "sweep.json records the trials that ran" in err
    first = record["trials"][0]
    assert first["status"] == "interrupted" and first["epochs"] >= 1
    assert [t["status"] for t in record["trials"][1:]] == ["pending", "pending"]
    info = read_json(sweep / first["run_dir"] / "run.json")
    assert info["status"] == "interrupted" and info["signal"] == "SIGINT"


def test_planning_a_sweep_does_not_import_tensorflow(tmp_path: Path) -> None:
    config = write_tiny(tmp_path)
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom kerasrun.cli import app\n"
        f"result = CliRunner().invoke(app, ['sweep', {str(config)!r}, '--grid', 'seed=1,2', '--print-commands'])\n"
        "assert result.exit_code == 0, result.output"
    )
    assert not {"tensorflow", "keras"} & modules_loaded_by(code)


def test_mode_max_ranks_high_values_first_and_only_completed_trials() -> None:
    from kerasrun.rundir.files import best_epoch
    from kerasrun.sweep.record import SweepRecord, Trial

    assert best_epoch({"epoch": [1, 2, 3], "acc": [0.5, 0.9, 0.9]}, "acc", "max") == (2, 0.9)  # the first epoch of a tie
    assert best_epoch({"epoch": [1], "loss": [0.3]}, "val_loss", "min") is None
    assert best_epoch({"epoch": [1, 2], "loss": [float("nan"), 0.4]}, "loss") == (2, 0.4)  # non-finite values never win
    record = SweepRecord(Path("unused"), "c.yaml", "grid", "acc", "max", [])
    record.trials = [
        Trial(0, [], {}, status="completed", metric=0.7),
        Trial(1, [], {}, status="pruned", metric=0.99),
        Trial(2, [], {}, status="completed", metric=0.8),
    ]
    record.rank()
    assert [t.rank for t in record.trials] == [2, None, 1]
    assert [t["index"] for t in record.as_dict()["trials"]] == [2, 0, 1]


def test_sigterm_to_a_sweep_with_workers_stops_them_and_marks_their_trials(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 2000}})
    runs = tmp_path / "runs"
    process = kerasrun_popen(["sweep", str(config), "--grid", f"{LR}=0.01,0.02,0.03", "--jobs", "2", "--runs-dir", str(runs)])
    wait_for_histories(process, runs, 2)
    process.send_signal(signal.SIGTERM)  # to the sweep only, as `kill PID` does: it passes the signal on to its workers
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    sweep = only_sweep(runs)
    record = read_json(sweep / "sweep.json")
    assert record["status"] == "interrupted"
    by_index = {t["index"]: t for t in record["trials"]}
    assert by_index[2]["status"] == "pending"  # worker 0's second trial never started
    for index in (0, 1):
        assert by_index[index]["status"] == "interrupted"
        info = read_json(sweep / by_index[index]["run_dir"] / "run.json")
        assert info["status"] == "interrupted" and info["signal"] == "SIGTERM" and info["pid"] != process.pid


def test_a_sweep_key_that_is_not_a_dotted_key_names_nothing() -> None:
    from kerasrun.sweep.space import key_exists

    assert key_exists({"train": {"epochs": 1}}, "train.epochs") and not key_exists({"train": {"epochs": 1}}, "train..epochs")
