"""One sweep shared by two `kerasrun sweep` processes through one storage: trials per process, duplicates, wall time, kill -9.

    python bench/sweep_share.py [--epochs 2] [--kill-epochs 40] [--no-postgres]

On the tests' tiny synthetic experiment (tests/helpers.py TINY), for each storage — the default journal
file in the sweep folder, and PostgreSQL when a throwaway server can be started (tests/postgres.py's
Server; `--no-postgres` skips it) — it starts two identical `kerasrun sweep … --study-name NAME
--runs-dir RUNS --json` commands at once (as two machines would) for:

- a 6-trial random sweep (`--random 6 --space compile.optimizer.Adam.learning_rate=loguniform(1e-3,1e-1)`);
- a 6-point grid sweep (`--grid compile.optimizer.Adam.learning_rate=0.01,…,0.06`);

and reports the trials each process trained (run.json's pid in each trial folder), duplicates (trials
with identical overrides, trial folders beyond 6, trials with more than one attempt) and the wall time
from the start to both processes' exit. Then the kill case: two processes on a 3-point grid of
--kill-epochs epochs; once a trial has 3 epochs its process is killed with SIGKILL; it reports
sweep.json's `attempts` of every trial, the survivor's exit and time, and whether each retried
trial's history.json is byte-identical to a standalone `kerasrun train` of the same overrides.
Writes bench/results/sweep_share.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import TINY, merge  # noqa: E402  (the tests' tiny experiment)
from postgres import Server, find_server_bin, server_user, temp_parent  # noqa: E402  (the tests' throwaway PostgreSQL)

KERASRUN = [sys.executable, "-m", "kerasrun"]
LR = "compile.optimizer.Adam.learning_rate"
SEARCHES = {
    "random": ["--random", "6", "--space", f"{LR}=loguniform(1e-3,1e-1)"],
    "grid": ["--grid", f"{LR}=0.01,0.02,0.03,0.04,0.05,0.06"],
}
KILL_GRID = ["--grid", f"{LR}=0.01,0.02,0.03"]
RESULTS = REPO / "bench" / "results" / "sweep_share.json"
TIMEOUT = 900.0  # a guard against a hang, far above any case here


def environment() -> dict[str, str]:
    """The commands' environment: this checkout importable, a throwaway KERASRUN_HOME."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "KERASRUN_DATA_DIR": os.environ.get("KERASRUN_DATA_DIR", str(REPO.parent / "shared" / "data")),
        "KERASRUN_HOME": tempfile.mkdtemp(prefix="kerasrun-home-"),
    }


def load() -> str:
    """The load averages, as uptime shows them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def write_config(folder: Path, epochs: int) -> Path:
    """The tiny config with `train.epochs` set."""
    path = folder / f"tiny-{epochs}.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, {"train": {"epochs": epochs}}), sort_keys=False))
    return path


@contextlib.contextmanager
def postgres(wanted: bool) -> Iterator[str | None]:
    """A throwaway PostgreSQL server's URL (the tests' Server), or None when it is not wanted or cannot start."""
    folder = find_server_bin() if wanted else None
    if folder is None:
        if wanted:
            print("PostgreSQL's initdb and pg_ctl not found: journal storage only", file=sys.stderr)
        yield None
        return
    user = server_user()
    server = Server(bin=folder, base=Path(tempfile.mkdtemp(prefix="kerasrun-pg-", dir=temp_parent(user))), user=user)
    try:
        if user is not None:
            os.chown(server.base, user.pw_uid, user.pw_gid)
        server.init()
        server.start()
        server.create_database()
        yield server.url
    finally:
        server.stop()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """`kerasrun ARGS` in a new process, stdout and stderr to files (no pipe can fill and block it)."""
    return subprocess.Popen(
        [*KERASRUN, *args],
        env=env,
        cwd=REPO,
        stdout=open(log.with_suffix(".out"), "w"),
        stderr=open(log.with_suffix(".err"), "w"),
        text=True,
    )


def finish(process: subprocess.Popen[str], log: Path) -> int:
    """Wait for a process; its exit code (its stderr's tail printed when it failed)."""
    code = process.wait(timeout=TIMEOUT)
    if code not in (0, -signal.SIGKILL):
        print(f"{log.name}: exit {code}\n{log.with_suffix('.err').read_text()[-3000:]}", file=sys.stderr)
    return code


def read_json(path: Path) -> Any:
    """A JSON file's content."""
    return json.loads(path.read_text())


def shared(config: Path, search: str, storage: str | None, runs: Path, env: dict[str, str]) -> dict[str, Any]:
    """Two processes started at once on one sweep: trials per process, duplicates, wall time."""
    name = f"{search}-{'postgresql' if storage else 'journal'}"
    command = ["sweep", str(config), *SEARCHES[search], "--study-name", name, "--runs-dir", str(runs), "--json"]
    if storage:
        command += ["--storage", storage]
    began = time.perf_counter()
    processes = [start(command, env, runs.parent / f"{name}-{i}") for i in range(2)]
    codes = [finish(p, runs.parent / f"{name}-{i}") for i, p in enumerate(processes)]
    wall = time.perf_counter() - began
    sweep = runs / name
    record = read_json(sweep / "sweep.json")
    folders = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.startswith("trial-"))
    pids = Counter(read_json(folder / "run.json")["pid"] for folder in folders)
    overrides = Counter(tuple(t["overrides"]) for t in record["trials"])
    return {
        "case": name,
        "codes": codes,
        "wall_s": wall,
        "status": record["status"],
        "trials": len(record["trials"]),
        "trial_folders": len(folders),
        "per_process": [pids.get(p.pid, 0) for p in processes],
        "other_pids": sum(count for pid, count in pids.items() if pid not in {p.pid for p in processes}),
        "identical_overrides": sum(count - 1 for count in overrides.values()),
        "retried": sum(len(t["attempts"]) - 1 for t in record["trials"]),
        "completed": sum(t["status"] == "completed" for t in record["trials"]),
        "load": load(),
    }


def wait_for_epochs(sweep: Path, epochs: int, processes: list[subprocess.Popen[str]]) -> Path | None:
    """The first trial folder whose history has `epochs` epochs, or None when the processes end or 5 minutes pass."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        for history in sorted(sweep.glob("trial-*/history.json")):
            with contextlib.suppress(ValueError, KeyError, OSError):  # being rewritten
                if len(json.loads(history.read_text())["epoch"]) >= epochs:
                    return history.parent
        time.sleep(0.1)
    return None


def standalone(config: Path, overrides: list[str], runs: Path, env: dict[str, str]) -> bytes:
    """history.json of `kerasrun train CONFIG --set …` alone."""
    args = ["train", str(config), *[a for o in overrides for a in ("--set", o)], "--runs-dir", str(runs), "--progress", "none"]
    out = subprocess.run([*KERASRUN, *args], env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: standalone train failed ({out.returncode})\n{out.stderr[-3000:]}")
    (run,) = list(runs.iterdir())
    return (run / "history.json").read_bytes()


def killed(config: Path, storage: str | None, runs: Path, env: dict[str, str]) -> dict[str, Any]:
    """Two processes on a 3-point grid, one killed with SIGKILL mid-trial: attempts, survivor, byte-identical retries."""
    name = f"kill-{'postgresql' if storage else 'journal'}"
    command = ["sweep", str(config), *KILL_GRID, "--study-name", name, "--runs-dir", str(runs)]
    if storage:
        command += ["--storage", storage]
    began = time.perf_counter()
    processes = [start(command, env, runs.parent / f"{name}-{i}") for i in range(2)]
    sweep = runs / name
    victim_dir = wait_for_epochs(sweep, 3, processes)
    if victim_dir is None:
        sys.exit(f"error: {name}: no trial trained 3 epochs while both processes ran")
    victim_pid = read_json(victim_dir / "run.json")["pid"]
    victim_epochs = len(read_json(victim_dir / "history.json")["epoch"])
    (victim,) = [p for p in processes if p.pid == victim_pid]
    (survivor,) = [p for p in processes if p is not victim]
    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    # Reap the victim first: until its parent waits for it, a killed process is a zombie, which kerasrun takes for alive.
    codes = {p.pid: finish(p, runs.parent / f"{name}-{processes.index(p)}") for p in (victim, survivor)}
    ended = time.perf_counter()
    record = read_json(sweep / "sweep.json")
    trials = sorted(record["trials"], key=lambda t: t["index"])
    retried = [t for t in trials if len(t["attempts"]) > 1]
    identical = {
        t["run_dir"]: (sweep / t["run_dir"] / "history.json").read_bytes() == standalone(config, t["overrides"], runs.parent / f"alone-{name}-{t['index']}", env)
        for t in retried
    }  # fmt: skip
    survivor_out = runs.parent / f"{name}-{processes.index(survivor)}.out"
    return {
        "case": name,
        "codes": {"victim": codes[victim.pid], "survivor": codes[survivor.pid]},
        "status": record["status"],
        "killed_trial": victim_dir.name,
        "killed_after_epochs": victim_epochs,
        "attempts": {t["run_dir"]: t["attempts"] for t in trials},
        "statuses": {t["run_dir"]: t["status"] for t in trials},
        "epochs": {t["run_dir"]: t["epochs"] for t in trials},
        "retried": [t["run_dir"] for t in retried],
        "retried_byte_identical": identical,
        "retried_pid_is_survivor": {t["run_dir"]: read_json(sweep / t["run_dir"] / "run.json")["pid"] == survivor.pid for t in retried},
        "resume_line": [line.strip() for line in survivor_out.read_text().splitlines() if "resumes from its checkpoint" in line],
        "kill_to_end_s": ended - killed_at,
        "wall_s": ended - began,
        "load": load(),
    }


def main() -> None:
    """Run every case, print Markdown tables, write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each trial of the 6-trial sweeps")
    parser.add_argument("--kill-epochs", type=int, default=40, help="epochs of each trial of the kill case (~0.1 s an epoch)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    env = environment()
    work = Path(tempfile.mkdtemp(prefix="kerasrun-share-"))
    config, long_config = write_config(work, args.epochs), write_config(work, args.kill_epochs)
    print(f"work folder {work}; load before: {load()}", file=sys.stderr)
    rows, kills = [], []
    with postgres(not args.no_postgres) as url:
        for storage in [None, *([url] if url else [])]:
            for search in SEARCHES:
                rows.append(shared(config, search, storage, work / "runs", env))
                print(json.dumps(rows[-1]), file=sys.stderr)
            kills.append(killed(long_config, storage, work / "runs", env))
            print(json.dumps(kills[-1]), file=sys.stderr)
    print(f"two processes at once, 6 trials of {args.epochs} epochs (tiny config)\n")
    print(
        "| case | load (1/5/15 min) | trials per process | trial folders | identical overrides | retried | completed | wall time | exit codes |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(
            f"| {r['case']} | {r['load']} | {' + '.join(map(str, r['per_process']))} | {r['trial_folders']} | {r['identical_overrides']} | "
            f"{r['retried']} | {r['completed']}/{r['trials']} | {r['wall_s']:.1f} s | {r['codes']} |"
        )
    print(f"\nkill -9 of one of two processes, 3-point grid of {args.kill_epochs} epochs\n")
    print("| case | killed trial (epochs done) | attempts | retried | byte-identical to train alone | kill → end | wall time | exit (victim, survivor) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | ---: | ---: | --- |")
    for k in kills:
        attempts = ", ".join(f"{name}: {a}" for name, a in k["attempts"].items())
        print(
            f"| {k['case']} | {k['killed_trial']} ({k['killed_after_epochs']}) | {attempts} | {', '.join(k['retried']) or 'none'} | "
            f"{k['retried_byte_identical']} | {k['kill_to_end_s']:.1f} s | {k['wall_s']:.1f} s | "
            f"{k['codes']['victim']}, {k['codes']['survivor']} |"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta = {"when": stamp, "epochs": args.epochs, "kill_epochs": args.kill_epochs, "postgresql": bool(rows and len(rows) > 2)}
    RESULTS.write_text(json.dumps({**meta, "shared": rows, "killed": kills}, indent=2) + "\n")


if __name__ == "__main__":
    main()
