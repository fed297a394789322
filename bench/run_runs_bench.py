"""How fast `kerasrun runs` lists 1,000 run folders (target: ≤ 1 s), against baselines measured in the same run.

    python bench/run_runs_bench.py [--count 1000] [--rounds 7] [--source RUN_DIR]

Makes COUNT run folders from a real run's run.json, history.json, metrics.json and config.yaml
(`--source`, or a digits run trained first): varied names and start times, mostly completed, some
interrupted, failed, or `running` with a dead process (so `crashed`: the liveness check runs too).
Then, alternating the order each round, it times:

- `python -m kerasrun runs --runs-dir D` (plain table, stdout a pipe) and `--json`, whole processes,
  against `python -m kerasrun --help` — the fixed cost of starting the command;
- `list_runs(D)` in-process, against a bare loop that json-loads each folder's run.json and
  history.json (what a hand-written jq or Python script reads, without YAML, status or formatting).

Reports medians and ratios; writes bench/results/runs.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "runs.json"
FILES = ("run.json", "history.json", "metrics.json", "config.yaml")


def train_source(base: Path) -> Path:
    """A real run folder: configs/digits_mlp.yaml trained once (scikit-learn's digits, seconds)."""
    cmd = [
        sys.executable,
        "-m",
        "kerasrun",
        "train",
        str(REPO / "configs" / "digits_mlp.yaml"),
        "--runs-dir",
        str(base),
        "--progress",
        "none",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode})\n{out.stdout}\n{out.stderr}")
    (run,) = [p for p in base.iterdir() if p.is_dir()]
    return run


def dead_pid() -> int:
    """The pid of a process that has exited."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)


def make_runs(source: Path, runs_dir: Path, count: int) -> dict[str, int]:
    """COUNT copies of `source` under `runs_dir` with varied names, times and statuses; how many of each status."""
    info = json.loads((source / "run.json").read_text())
    texts = {name: (source / name).read_bytes() for name in FILES if (source / name).exists()}
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    pid = dead_pid()
    statuses: dict[str, int] = {}
    for index in range(count):
        when = start + datetime.timedelta(minutes=17 * index)
        name = f"{info['name']}-{('lr', 'wd', 'bs', 'drop')[index % 4]}{index % 13}"
        folder = runs_dir / f"{when:%Y%m%d-%H%M%S}-{name}"
        folder.mkdir()
        for file, data in texts.items():
            (folder / file).write_bytes(data)
        status = "completed"
        if index % 50 == 7:
            status = "interrupted"
        elif index % 50 == 21:
            status = "failed"
        elif index % 50 == 33:
            status = "running"  # its process is gone: listed as crashed
        record = dict(info, name=name, status=status, started=when.isoformat(), ended=(when + datetime.timedelta(seconds=95)).isoformat())
        if status == "running":
            record.update(ended=None, pid=pid, host=platform.node(), pid_started=None)
        (folder / "run.json").write_text(json.dumps(record, indent=2))
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def time_process(args: list[str]) -> float:
    """Wall seconds of `python -m kerasrun ARGS` (stdout a pipe, as in a script)."""
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "kerasrun", *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if out.returncode != 0:
        sys.exit(f"error: kerasrun {' '.join(args)} failed ({out.returncode})\n{out.stderr}")
    return seconds


def bare_read(runs_dir: Path) -> int:
    """The baseline: json-load run.json and history.json of every folder, nothing else."""
    count = 0
    for folder in sorted(runs_dir.iterdir()):
        json.loads((folder / "run.json").read_bytes())
        json.loads((folder / "history.json").read_bytes())
        count += 1
    return count


def time_call(call: Any) -> float:
    """Wall seconds of one call."""
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main() -> None:
    """Make the folders, time the rounds, print a Markdown table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--source", type=Path, help="a real run folder to copy (default: train configs/digits_mlp.yaml once)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from kerasrun.runs.listing import list_runs

    work = Path(tempfile.mkdtemp(prefix="kerasrun-runs-bench-"))
    try:
        source = args.source or train_source(work / "source")
        runs_dir = work / "runs"
        runs_dir.mkdir()
        statuses = make_runs(source, runs_dir, args.count)
        listed = list_runs(runs_dir)
        assert len(listed) == args.count, len(listed)
        crashed = sum(1 for summary in listed if summary.status == "crashed")
        assert crashed == statuses.get("running", 0), (crashed, statuses)
        measures: dict[str, list[float]] = {"help": [], "runs": [], "runs_json": [], "list_runs": [], "bare_read": []}
        for index in range(args.rounds):
            steps = [
                ("help", lambda: time_process(["--help"])),
                ("runs", lambda: time_process(["runs", "--runs-dir", str(runs_dir)])),
                ("runs_json", lambda: time_process(["runs", "--runs-dir", str(runs_dir), "--json"])),
                ("list_runs", lambda: time_call(lambda: list_runs(runs_dir))),
                ("bare_read", lambda: time_call(lambda: bare_read(runs_dir))),
            ]
            for key, step in steps if index % 2 == 0 else reversed(steps):
                measures[key].append(step())
        medians = {key: statistics.median(values) for key, values in measures.items()}
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "count": args.count,
            "rounds": args.rounds,
            "statuses": statuses,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "seconds": measures,
            "medians": medians,
            "ratios": {
                "runs / --help (processes)": medians["runs"] / medians["help"],
                "list_runs / bare json reads (in-process)": medians["list_runs"] / medians["bare_read"],
            },
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{args.count} run folders ({', '.join(f'{v} {k}' for k, v in sorted(statuses.items()))}), median of {args.rounds} rounds\n")
        print("| what | median | ratio |")
        print("| --- | ---: | ---: |")
        print(f"| `kerasrun --help` (process; the baseline) | {medians['help']:.3f} s | 1.00 |")
        print(f"| `kerasrun runs` (process, plain table) | {medians['runs']:.3f} s | {medians['runs'] / medians['help']:.2f} |")
        print(f"| `kerasrun runs --json` (process) | {medians['runs_json']:.3f} s | {medians['runs_json'] / medians['help']:.2f} |")
        print(f"| bare json reads of run.json + history.json (in-process; the baseline) | {medians['bare_read']:.3f} s | 1.00 |")
        print(f"| `list_runs` (in-process) | {medians['list_runs']:.3f} s | {medians['list_runs'] / medians['bare_read']:.2f} |")
        print(f"\nwrote {RESULTS}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
