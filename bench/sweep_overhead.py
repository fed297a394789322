"""A sweep's overhead per trial: one `kerasrun sweep` process of a 4-point grid against 4 `kerasrun train` processes.

    python bench/sweep_overhead.py [--rounds 3] [--epochs 5] [--config CONFIG]

The default config is the tests' tiny synthetic experiment (tests/helpers.py TINY, three Gaussian
blobs, no data files), written to a temp folder with `train.epochs` set to --epochs; `--config` takes
another one (e.g. configs/digits_mlp.yaml, with `--epochs 3`). Each round runs, alternating which arm
goes first, (a) `kerasrun sweep CONFIG --grid compile.optimizer.Adam.learning_rate=v1,…,v4` and (b) the
same four trainings as four `kerasrun train CONFIG --set …` processes one after another, and reports:

- wall time per trial of each arm (whole processes, from outside) and their ratio sweep / train;
- inside the sweep, what is not training: the trial's own `seconds` (sweep.json: load the config,
  prepare, train, evaluate, write the run folder) against the wall time per trial, split by the times
  the sweep's progress lines arrive into start-up (process start to the first trial's `started`),
  per-trial bookkeeping (`started` to `completed` less the trial's seconds, and `completed` to the
  next `started`: the study's tell, sweep.json rewrites, the next take) and the tail (last
  `completed` to exit: summary and final sweep.json);
- for the train arm, each process's wall time less its run.json timings (start-up and what they
  leave out), the per-process fixed cost a sweep saves.

It checks every trial's history.json against the standalone run's, byte for byte. Writes
bench/results/sweep_overhead.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import TINY, merge  # noqa: E402  (the tests' tiny experiment, without pytest fixtures)

KERASRUN = [sys.executable, "-m", "kerasrun"]
KEY = "compile.optimizer.Adam.learning_rate"
VALUES = ("0.01", "0.02", "0.03", "0.04")
RESULTS = REPO / "bench" / "results" / "sweep_overhead.json"
PROGRESS = re.compile(r"^(trial-\d+) \(of \d+\)\s.*: (started|completed)\b")


def environment() -> dict[str, str]:
    """The commands' environment: this checkout importable, unbuffered output, a throwaway KERASRUN_HOME."""
    data = os.environ.get("KERASRUN_DATA_DIR", str(REPO.parent / "shared" / "data"))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "KERASRUN_DATA_DIR": data,
        "KERASRUN_HOME": tempfile.mkdtemp(prefix="kerasrun-home-"),
    }


def load() -> str:
    """The load averages, as uptime shows them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_sweep(config: Path, env: dict[str, str], runs: Path) -> dict[str, Any]:
    """The grid as one sweep process: wall time, the progress lines' arrival times, sweep.json's trials, the histories."""
    cmd = [*KERASRUN, "sweep", str(config), "--grid", f"{KEY}={','.join(VALUES)}", "--runs-dir", str(runs)]
    events: list[tuple[float, str, str]] = []
    lines = []
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: nothing can block on a full stderr pipe
        start = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = PROGRESS.match(line)
            if match:
                events.append((time.perf_counter() - start, match.group(1), match.group(2)))
        code = process.wait()
        wall = time.perf_counter() - start
        if code != 0:
            stderr.seek(0)
            sys.exit(f"error: {' '.join(cmd)} failed ({code})\n{''.join(lines)}\n{stderr.read()}")
    (sweep,) = list(runs.iterdir())
    record = json.loads((sweep / "sweep.json").read_text())
    histories = {t["overrides"][0].partition("=")[2]: (sweep / t["run_dir"] / "history.json").read_bytes() for t in record["trials"]}
    seconds = {t["run_dir"]: float(t["seconds"]) for t in record["trials"]}
    return {"wall": wall, "events": events, "seconds": seconds, "histories": histories}


def run_separately(config: Path, env: dict[str, str], runs: Path) -> dict[str, Any]:
    """The grid as four train processes one after another: each one's wall time and run.json timings, the histories."""
    walls, timed, histories = [], [], {}
    for value in VALUES:
        folder = runs / value
        cmd = [*KERASRUN, "train", str(config), "--set", f"{KEY}={value}", "--runs-dir", str(folder), "--progress", "none"]
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if out.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode})\n{out.stdout}\n{out.stderr}")
        (run,) = list(folder.iterdir())
        timed.append(sum(json.loads((run / "run.json").read_text())["timings"].values()))
        histories[value] = (run / "history.json").read_bytes()
    return {"walls": walls, "timed": timed, "histories": histories}


def sweep_parts(sweep: dict[str, Any]) -> dict[str, float]:
    """Split the sweep's wall time by its progress lines: start-up, trials' own seconds, bookkeeping, tail."""
    events, seconds = sweep["events"], sweep["seconds"]
    started = {name: at for at, name, kind in events if kind == "started"}
    completed = {name: at for at, name, kind in events if kind == "completed"}
    order = sorted(started, key=started.__getitem__)
    inside = sum(completed[name] - started[name] - seconds[name] for name in order)
    between = sum(started[b] - completed[a] for a, b in itertools.pairwise(order))
    return {
        "startup": started[order[0]],
        "trial_seconds": sum(seconds.values()),
        "bookkeeping": inside + between,
        "tail": sweep["wall"] - completed[order[-1]],
    }


def main() -> None:
    """Run the rounds, print Markdown tables, write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--config", type=Path, default=None, help="default: the tests' tiny synthetic config")
    args = parser.parse_args()
    env = environment()
    work = Path(tempfile.mkdtemp(prefix="kerasrun-bench-"))
    if args.config is None:
        config = work / "tiny.yaml"
        config.write_text(yaml.safe_dump(merge(TINY, {"train": {"epochs": args.epochs}}), sort_keys=False))
    else:
        loaded = yaml.safe_load(args.config.read_text())
        loaded.setdefault("train", {})["epochs"] = args.epochs
        config = work / args.config.name
        config.write_text(yaml.safe_dump(loaded, sort_keys=False))
    n = len(VALUES)
    rows: list[dict[str, Any]] = []
    print(f"load before: {load()}", file=sys.stderr)
    for index in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as tmp:
            arms = [("sweep", run_sweep), ("train", run_separately)]
            if index % 2:
                arms.reverse()
            result = {name: arm(config, env, Path(tmp) / name) for name, arm in arms}
        if result["sweep"]["histories"] != result["train"]["histories"]:
            sys.exit("error: a sweep trial's history.json differs from its standalone run's")
        parts = sweep_parts(result["sweep"])
        sweep_wall, train_wall = result["sweep"]["wall"], sum(result["train"]["walls"])
        row = {
            "first": arms[0][0],
            "load": load(),
            "sweep_per_trial": sweep_wall / n,
            "train_per_trial": train_wall / n,
            "ratio": sweep_wall / train_wall,
            "trial_seconds": parts["trial_seconds"] / n,
            "not_training": (sweep_wall - parts["trial_seconds"]) / n,
            "startup": parts["startup"],
            "bookkeeping": parts["bookkeeping"] / n,
            "tail": parts["tail"],
            "train_not_timed": (train_wall - sum(result["train"]["timed"])) / n,
            "train_timed": sum(result["train"]["timed"]) / n,
        }
        rows.append(row)
        print(f"round {index + 1}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})}", file=sys.stderr)
    keys = [key for key, value in rows[0].items() if isinstance(value, float)]
    medians = {key: statistics.median(row[key] for row in rows) for key in keys}
    print(f"{n}-trial grid, {args.epochs} epochs each, config {args.config or 'tiny (tests/helpers.py TINY)'}\n")
    print("| round | first | load (1/5/15 min) | sweep, per trial | train, per trial | ratio sweep / train |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for index, row in enumerate(rows, 1):
        print(
            f"| {index} | {row['first']} | {row['load']} | {row['sweep_per_trial']:.2f} s | {row['train_per_trial']:.2f} s | {row['ratio']:.3f} |"
        )
    print(
        f"| **median of {len(rows)}** | | | {medians['sweep_per_trial']:.2f} s | {medians['train_per_trial']:.2f} s | **{medians['ratio']:.3f}** |"
    )
    print()
    print("| round | trial's own seconds | sweep wall / trial − that | start-up (once) | bookkeeping / trial | tail (once) | train: wall − run.json timings / process |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for index, row in enumerate(rows, 1):
        print(
            f"| {index} | {row['trial_seconds']:.2f} s | {row['not_training']:.2f} s | {row['startup']:.2f} s | "
            f"{row['bookkeeping'] * 1000:.0f} ms | {row['tail']:.2f} s | {row['train_not_timed']:.2f} s |"
        )
    print(
        f"| **median** | {medians['trial_seconds']:.2f} s | {medians['not_training']:.2f} s | {medians['startup']:.2f} s | "
        f"{medians['bookkeeping'] * 1000:.0f} ms | {medians['tail']:.2f} s | {medians['train_not_timed']:.2f} s |"
    )
    print("\nevery trial's history.json was byte-identical to its standalone run's")
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta = {"when": stamp, "epochs": args.epochs, "config": str(args.config or "tiny"), "values": VALUES}
    RESULTS.write_text(json.dumps({**meta, "rounds": rows, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
