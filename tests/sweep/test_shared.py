"""A sweep shared by several real processes through one Optuna storage (journal file, PostgreSQL), crash-resume, scheduler handoff.

The processes are started as separate `kerasrun sweep` commands, as on separate machines: the same
command with the same --study-name and runs folder joins one study. Killed processes are killed with
SIGKILL, for real; a killed trial's history must come out byte-identical to a standalone train.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import kerasrun_popen, write_tiny
from typer.testing import CliRunner

from kerasrun.cli import app
from kerasrun.rundir.io import read_json

LR = "compile.optimizer.Adam.learning_rate"
LONG = {"train": {"epochs": 40}}  # long enough to be killed mid-trial, short enough for CI (~0.1 s an epoch)


def finish(process: subprocess.Popen[str], timeout: float = 400) -> tuple[int, str, str]:
    """Wait for a process (a generous guard against hangs); its exit code, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def trials(sweep: Path) -> list[dict[str, Any]]:
    """sweep.json's trials, by number."""
    return sorted(read_json(sweep / "sweep.json")["trials"], key=lambda t: t["index"])


def wait_for_epochs(sweep_dir: Path, epochs: int, processes: list[subprocess.Popen[str]]) -> Path:
    """The first trial folder whose history has `epochs` epochs (fails if the processes end or two minutes pass)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        for history in sorted(sweep_dir.glob("trial-*/history.json")):
            try:
                if len(json.loads(history.read_text())["epoch"]) >= epochs:
                    return history.parent
            except (ValueError, KeyError):
                continue  # being rewritten
        time.sleep(0.2)
    pytest.fail("no trial trained far enough: " + " | ".join(p.communicate()[1][-2000:] for p in processes))


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The long config, and `kerasrun train` alone of lr=0.01 and lr=0.02 (what the killed trials must equal)."""
    folder = tmp_path_factory.mktemp("alone")
    config = write_tiny(folder, LONG)
    started = {
        lr: kerasrun_popen(["train", str(config), "--set", f"{LR}={lr}", "--runs-dir", str(folder / lr), "--progress", "none"])
        for lr in ("0.01", "0.02")
    }
    for process in started.values():
        code, _, err = finish(process)
        assert code == 0, err
    return {"config": config, **{lr: next((folder / lr).iterdir()) / "history.json" for lr in started}}


def test_two_processes_share_a_grid_and_a_killed_ones_trial_is_resumed_by_the_other(tmp_path: Path, standalone: dict[str, Path]) -> None:
    runs = tmp_path / "runs"
    command = ["sweep", str(standalone["config"]), "--grid", f"{LR}=0.01,0.02,0.03", "--study-name", "shared", "--runs-dir", str(runs)]
    first = kerasrun_popen(command)
    time.sleep(1.0)  # let the first make the study: the second must join it, not race it (racing is the next test's)
    second = kerasrun_popen(command)
    sweep = runs / "shared"
    victim_dir = wait_for_epochs(sweep, 3, [first, second])
    victim_pid = read_json(victim_dir / "run.json")["pid"]
    killed, survivor = (first, second) if victim_pid == first.pid else (second, first)
    assert victim_pid in (first.pid, second.pid)
    os.kill(victim_pid, signal.SIGKILL)
    assert finish(killed)[0] == -signal.SIGKILL
    code, out, err = finish(survivor)
    assert code == 0, err
    record = read_json(sweep / "sweep.json")
    assert record["status"] == "completed" and record["study_name"] == "shared"
    by_index = {t["index"]: t for t in record["trials"]}
    assert sorted(by_index) == [0, 1, 2] and all(t["status"] == "completed" and t["epochs"] == 40 for t in by_index.values())
    victim = next(t for t in by_index.values() if t["run_dir"] == victim_dir.name)
    assert len(victim["attempts"]) == 2  # failed by the survivor once its process was gone, enqueued again, resumed
    assert "attempt 2: resumes from its checkpoint" in out
    lr = victim["overrides"][0].partition("=")[2]
    assert lr in standalone  # killed while the first two trials train: one of them
    assert (victim_dir / "history.json").read_bytes() == standalone[lr].read_bytes()
    info = read_json(victim_dir / "run.json")
    assert info["status"] == "completed" and info["pid"] == survivor.pid
    assert {w["pid"] for w in record["workers"]} == {first.pid, second.pid}
    compared = CliRunner().invoke(app, ["compare", str(sweep), "--json"])  # a sweep folder is its trials, whoever trained them
    assert compared.exit_code == 0, compared.output
    assert len(json.loads(compared.stdout)["runs"]) == 3
    plotted = CliRunner().invoke(app, ["plot", str(sweep), "-o", str(tmp_path / "curves.png")])
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_two_processes_started_at_once_train_each_trial_once(tmp_path: Path, storage: str, request: pytest.FixtureRequest) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 2}})
    runs = tmp_path / "runs"
    if storage == "postgresql":
        search = ["--random", "6", "--space", f"{LR}=loguniform(1e-3,1e-1)", "--storage", request.getfixturevalue("postgres_url")]
    else:
        search = ["--grid", f"{LR}=0.01,0.02,0.03,0.04,0.05,0.06"]
    command = ["sweep", str(config), *search, "--study-name", f"race-{storage}", "--runs-dir", str(runs), "--json"]
    processes = [kerasrun_popen(command) for _ in range(2)]  # at once: one makes the study, the other joins (or waits for it)
    results = [finish(p) for p in processes]
    assert all(code == 0 for code, _, _ in results), [err[-3000:] for _, _, err in results]
    final = json.loads(results[-1][1])  # --json: only JSON on stdout
    sweep = runs / f"race-{storage}"
    done = trials(sweep)
    assert len(done) == 6 and all(t["status"] == "completed" and len(t["attempts"]) == 1 for t in done)
    assert len({tuple(t["overrides"]) for t in done}) == 6  # no trial trained twice, none left out
    by_process = Counter(read_json(sweep / t["run_dir"] / "run.json")["pid"] for t in done)
    assert set(by_process) <= {p.pid for p in processes} and sum(by_process.values()) == 6
    assert final["status"] == "completed" and final["planned"] == 6


def test_optuna_on_postgresql_two_processes_seed_differently_and_prune_from_one_study(tmp_path: Path, postgres_url: str) -> None:
    import optuna

    config = write_tiny(tmp_path, {"train": {"epochs": 3}})
    space = ["--optuna", "6", "--space", f"{LR}=loguniform(1e-4,1e-1)", "--prune-startup", "1", "--seed", "3"]
    command = ["sweep", str(config), *space, "--storage", postgres_url, "--study-name", "tpe", "--runs-dir", str(tmp_path / "runs")]
    first = kerasrun_popen(command)
    time.sleep(1.0)
    second = kerasrun_popen(command)
    for process in (first, second):
        code, _, err = finish(process)
        assert code == 0, err[-3000:]
    record = read_json(tmp_path / "runs" / "tpe" / "sweep.json")
    assert record["method"] == "optuna" and record["storage"] == postgres_url and len(record["trials"]) == 6
    seeds = [w["sampler_seed"] for w in record["workers"]]
    assert len(seeds) == 2 and seeds[0] == 3 and seeds[1] != 3  # the maker keeps --seed; a joining process draws its own
    assert len({tuple(t["overrides"]) for t in record["trials"]}) == 6
    study = optuna.load_study(study_name="tpe", storage=postgres_url)
    ended = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(ended) == 6 and all(t.intermediate_values for t in ended)  # every epoch reported to the one study the pruner reads


def test_a_killed_sweep_shows_as_crashed_and_resume_finishes_it_byte_for_byte(tmp_path: Path, standalone: dict[str, Path]) -> None:
    runs = tmp_path / "runs"
    process = kerasrun_popen(["sweep", str(standalone["config"]), "--grid", f"{LR}=0.01,0.02", "--runs-dir", str(runs)])
    deadline = time.monotonic() + 60
    while (not runs.exists() or not any(runs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    (sweep,) = list(runs.iterdir())
    wait_for_epochs(sweep, 3, [process])
    process.kill()
    process.wait()
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", str(runs)])
    assert f"sweep {sweep.name}: crashed" in listed.stdout and f"kerasrun sweep --resume {sweep}" in listed.stdout
    resumed = kerasrun_popen(["sweep", "--resume", str(sweep)])
    code, out, err = finish(resumed)
    assert code == 0, err
    assert "joined its study: 0 of 2 trials ended before" in out and "attempt 2: resumes from its checkpoint" in out
    done = trials(sweep)
    assert [t["status"] for t in done] == ["completed", "completed"] and [len(t["attempts"]) for t in done] == [2, 1]
    for trial in done:
        lr = trial["overrides"][0].partition("=")[2]
        assert (sweep / trial["run_dir"] / "history.json").read_bytes() == standalone[lr].read_bytes(), lr
    assert f"sweep {sweep.name}: completed, 2 of 2 trials ended" in CliRunner().invoke(app, ["runs", "--runs-dir", str(runs)]).stdout


def test_joining_a_study_with_another_search_is_refused(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 1}})
    runs = tmp_path / "runs"
    made = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.01", "--study-name", "s", "--runs-dir", str(runs)])
    assert made.exit_code == 0, made.output
    other = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.01,0.1", "--study-name", "s", "--runs-dir", str(runs)])
    assert other.exit_code == 2 and "is another sweep: its space and planned differ from this command's" in other.output
    metric = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.01", "--metric", "loss", "--study-name", "s", "--runs-dir", str(runs)])  # fmt: skip
    assert metric.exit_code == 2 and "is another sweep: its metric differs from this command's" in metric.output, metric.output
    again = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.01", "--study-name", "s", "--runs-dir", str(runs)])
    assert again.exit_code == 0 and "joined its study: 1 of 1 trials ended before" in again.output  # nothing left: a summary
    bad = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.01", "--storage", "nosuchdb://x", "--runs-dir", str(runs)])
    assert bad.exit_code == 2 and "cannot open the Optuna storage nosuchdb://x" in bad.output
    assert [p.name for p in runs.iterdir()] == ["s"]  # the refused sweep left no folder
    other = CliRunner().invoke(app, ["sweep", str(config), "--grid", f"{LR}=0.01", "--study-name", "s", "--runs-dir", str(runs), "--storage", str(tmp_path / "x.journal")])  # fmt: skip
    assert other.exit_code == 2 and "this sweep folder belongs to the study 's'" in other.output  # a node that forgot --storage
    moved = tmp_path / "moved"
    (runs / "s").rename(moved)
    resumed = CliRunner().invoke(app, ["sweep", "--resume", str(moved)])  # the default journal travels with its folder
    assert resumed.exit_code == 0 and "joined its study: 1 of 1 trials ended before" in resumed.output, resumed.output


def test_print_commands_run_from_anywhere_and_collect_ranks_them(tmp_path: Path) -> None:
    config = write_tiny(tmp_path, {"train": {"epochs": 2}})
    listed = CliRunner().invoke(
        app,
        [
            "sweep",
            str(config),
            "--grid",
            f"{LR}=0.01,0.1",
            "--set",
            "train.epochs=2",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--print-commands",
        ],
    )
    assert listed.exit_code == 0, listed.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    tasks = [subprocess.Popen(shlex.split(line), cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for line in listed.stdout.splitlines()]  # fmt: skip
    for task in tasks:  # as two tasks of a Slurm array would, started in another directory
        code, _, err = finish(task)
        assert code == 0, err
    first_line = listed.stdout.splitlines()[0]
    again = subprocess.run(shlex.split(first_line), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr  # a restarted task: trial-000 trained again in a newer folder
    sweep = tmp_path / "runs" / "tiny-sweep"
    collected = CliRunner().invoke(app, ["sweep", "--collect", str(sweep), "--json"])
    assert collected.exit_code == 0, collected.output
    record = json.loads(collected.stdout)
    assert record["method"] == "collected" and record["status"] == "completed"
    assert sorted(t["index"] for t in record["trials"]) == [0, 1] and [t["rank"] for t in record["trials"]] == [1, 2]
    assert next(t for t in record["trials"] if t["index"] == 0)["run_dir"] == max(p.name for p in sweep.glob("*-trial-000"))
    assert {t["params"][LR] for t in record["trials"]} == {0.01, 0.1} and read_json(sweep / "sweep.json") == record
    # Every task's --set train.epochs=2 is the sweep's setting, not a searched key (it was a second `epochs` column).
    assert record["space"] == [{"key": LR, "kind": "collected", "values": [0.01, 0.1]}]
    listing = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs")])
    assert "tiny-sweep/" in listing.stdout and "sweep tiny-sweep: completed, 2 of 2 trials ended" in listing.stdout
    for filters in (["--status", "failed"], ["--name", "other-*"]):  # the sweep line is filtered as the runs are
        filtered = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), *filters])
        assert filtered.exit_code == 0 and "sweep tiny-sweep" not in filtered.stdout, filtered.output
    kept = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path / "runs"), "--status", "completed", "--name", "tiny-*"])
    assert "sweep tiny-sweep: completed" in kept.stdout, kept.output


def test_a_killed_local_worker_of_jobs_2_is_a_zombie_and_its_trial_is_still_finished(tmp_path: Path, standalone: dict[str, Path]) -> None:
    runs = tmp_path / "runs"
    command = [
        "sweep",
        str(standalone["config"]),
        "--grid",
        f"{LR}=0.01,0.02,0.03",
        "--jobs",
        "2",
        "--study-name",
        "j",
        "--runs-dir",
        str(runs),
    ]
    process = kerasrun_popen(command)
    victim_dir = wait_for_epochs(runs / "j", 3, [process])
    os.kill(read_json(victim_dir / "run.json")["pid"], signal.SIGKILL)  # reaped in start order: a later worker stays a zombie meanwhile
    code, _, err = finish(process)
    assert code == 0, err[-3000:]
    assert "warning: 1 of 2 worker processes ended with exit codes -9" in err
    done = trials(runs / "j")
    assert all(t["status"] == "completed" for t in done) and sum(len(t["attempts"]) for t in done) == 4
    victim = next(t for t in done if t["run_dir"] == victim_dir.name)
    lr = victim["overrides"][0].partition("=")[2]
    assert lr in standalone  # killed while the first two trials train: one of them
    assert (victim_dir / "history.json").read_bytes() == standalone[lr].read_bytes()


def test_an_interrupted_last_trial_leaves_the_sweep_interrupted_not_completed(tmp_path: Path, standalone: dict[str, Path]) -> None:
    runs = tmp_path / "runs"
    process = kerasrun_popen(["sweep", str(standalone["config"]), "--grid", f"{LR}=0.01", "--study-name", "one", "--runs-dir", str(runs)])
    wait_for_epochs(runs / "one", 3, [process])
    process.send_signal(signal.SIGINT)
    assert finish(process)[0] == 130
    record = read_json(runs / "one" / "sweep.json")
    assert record["status"] == "interrupted" and record["trials"][0]["status"] == "interrupted"
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", str(runs)])
    assert "sweep one: interrupted, 0 of 1 trials ended; continue it with `kerasrun sweep --resume" in listed.stdout
    refused = CliRunner().invoke(app, ["sweep", "--resume", str(runs / "one"), "--grid", f"{LR}=0.1"])
    assert refused.exit_code == 2 and "--grid can't be given here" in refused.output
