"""A 3-value grid of the digits quickstart: one `kerasrun sweep` process against three `kerasrun train` processes.

    python bench/run_sweep_bench.py [--rounds 5]

Each round times, by wall clock, (a) `kerasrun sweep configs/digits_mlp.yaml --grid
compile.optimizer.Adam.learning_rate=0.001,0.003,0.01` — TensorFlow imported once, the three trials in
one process — and (b) the same three trainings as three `kerasrun train … --set …` processes run one
after another, alternating which arm goes first. It checks that each trial's history.json is the
standalone run's byte for byte, and reports per round and as medians both wall times and their
ratio (sweep / separate). Writes bench/results/sweep.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "digits_mlp.yaml"
KERASRUN = [sys.executable, "-m", "kerasrun"]
KEY = "compile.optimizer.Adam.learning_rate"
VALUES = ("0.001", "0.003", "0.01")
RESULTS = REPO / "bench" / "results" / "sweep.json"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Run a command to completion; its wall time in seconds."""
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode})\n{out.stdout}\n{out.stderr}")
    return seconds


def run_sweep(env: dict[str, str], runs: Path) -> tuple[float, dict[str, bytes]]:
    """The grid as one sweep: wall time, and each trial's history.json by its value."""
    seconds = timed([*KERASRUN, "sweep", str(CONFIG), "--grid", f"{KEY}={','.join(VALUES)}", "--runs-dir", str(runs)], env)
    (sweep,) = list(runs.iterdir())
    record = json.loads((sweep / "sweep.json").read_text())
    return seconds, {t["overrides"][0].partition("=")[2]: (sweep / t["run_dir"] / "history.json").read_bytes() for t in record["trials"]}


def run_separately(env: dict[str, str], runs: Path) -> tuple[float, dict[str, bytes]]:
    """The grid as three train processes one after another: total wall time, and each history.json."""
    seconds, histories = 0.0, {}
    for value in VALUES:
        folder = runs / value
        seconds += timed([*KERASRUN, "train", str(CONFIG), "--set", f"{KEY}={value}", "--runs-dir", str(folder), "--progress", "none"], env)
        (run,) = list(folder.iterdir())
        histories[value] = (run / "history.json").read_bytes()
    return seconds, histories


def main() -> None:
    """Run the rounds, print a Markdown table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "KERASRUN_HOME": tempfile.mkdtemp(prefix="kerasrun-home-")}
    rows: list[dict[str, Any]] = []
    for index in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as tmp:
            arms = [("sweep", run_sweep), ("separate", run_separately)]
            if index % 2:
                arms.reverse()
            result = {name: arm(env, Path(tmp) / name) for name, arm in arms}
        identical = result["sweep"][1] == result["separate"][1]
        if not identical:
            sys.exit("error: a sweep trial's history.json differs from its standalone run's")
        sweep_s, separate_s = result["sweep"][0], result["separate"][0]
        rows.append(
            {"first": arms[0][0], "sweep_s": sweep_s, "separate_s": separate_s, "ratio": sweep_s / separate_s, "identical": identical}
        )
    print("| round | first | one sweep process | three train processes | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for index, row in enumerate(rows, 1):
        print(f"| {index} | {row['first']} | {row['sweep_s']:.2f} s | {row['separate_s']:.2f} s | {row['ratio']:.3f} |")
    medians = {key: statistics.median(row[key] for row in rows) for key in ("sweep_s", "separate_s", "ratio")}
    print(f"| median | | {medians['sweep_s']:.2f} s | {medians['separate_s']:.2f} s | {medians['ratio']:.3f} |")
    print("every trial's history.json was byte-identical to its standalone run's")
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    RESULTS.write_text(json.dumps({"when": stamp, "rounds": rows, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
