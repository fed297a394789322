"""Milliseconds per steady training and validation step of kerasrun's custom loop, with and without the ArrayFeed.

    python bench/step_times.py [--rounds 2] [--epochs 5] [--data-dir ../shared/data]

Each round trains configs/mnist_mlp.yaml twice in fresh processes, alternating which goes first: once
as kerasrun does by default (in-memory batches gathered inside the compiled call, kerasrun/data/feed.py)
and once with the feed switched off in this benchmark's process (the batches read from the tf.data
iterator, as before #21's change). `CustomLoop.call` is timed; the median of the full
`steps_per_execution`-step calls after the first 5 (tracing, warm-up) is divided by the steps per call.
Both runs must write the same history.json: the script checks it and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SKIPPED_CALLS = 5  # the first calls trace and warm up

CHILD = r"""
import json, sys, time
from kerasrun.train.trainers import custom

calls = {"train": [], "validation": []}
original = custom.CustomLoop.call

def timed(self, training, iterator, steps):
    start = time.perf_counter()
    done = original(self, training, iterator, steps)
    if done == self.steps_per_execution:
        calls["train" if training else "validation"].append(time.perf_counter() - start)
    return done

custom.CustomLoop.call = timed
if sys.argv[1] == "off":
    custom.CustomTrainer.read_in_graph = lambda self, train, validation: None
from kerasrun.cli import main
sys.argv = ["kerasrun", *sys.argv[2:]]
try:
    main()
except SystemExit as exit:
    if exit.code:
        raise
finally:
    print("STEP_TIMES " + json.dumps(calls))
"""


def run_once(feed: str, runs: Path, epochs: int, data_dir: str) -> tuple[dict[str, list[float]], str]:
    """Train the seed config in a fresh process; return its timed calls and history.json's MD5."""
    args = ["train", str(REPO / "configs/mnist_mlp.yaml"), "--runs-dir", str(runs), "--progress", "none"]
    args += ["--set", f"train.epochs={epochs}", "--set", "train.loop=custom"]
    env = {**os.environ, "KERASRUN_DATA_DIR": data_dir, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", CHILD, feed, *args], env=env, capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("STEP_TIMES "))
    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    return json.loads(line.removeprefix("STEP_TIMES ")), hashlib.md5((folder / "history.json").read_bytes()).hexdigest()


def ms_per_step(calls: list[float], steps: int) -> float:
    """Median milliseconds per step of the steady calls."""
    return statistics.median(calls[SKIPPED_CALLS:]) / steps * 1000


def main() -> None:
    """Alternate feed on / off for --rounds rounds and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    steps = 32  # configs/mnist_mlp.yaml's compile.steps_per_execution (the default)
    rows: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    digests: set[str] = set()
    for round_number in range(args.rounds):
        order = ("on", "off") if round_number % 2 == 0 else ("off", "on")
        for feed in order:
            with tempfile.TemporaryDirectory() as tmp:
                calls, digest = run_once(feed, Path(tmp), args.epochs, args.data_dir)
            digests.add(digest)
            rows[feed].append((ms_per_step(calls["train"], steps), ms_per_step(calls["validation"], steps)))
            print(
                f"round {round_number + 1} feed {feed}: train {rows[feed][-1][0]:.3f} ms/step, validation {rows[feed][-1][1]:.3f}",
                file=sys.stderr,
            )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| input | training ms/step (rounds) | validation ms/step (rounds) |")
    print("| --- | --- | --- |")
    for feed, label in (("on", "gathered in the compiled call (default)"), ("off", "tf.data iterator")):
        train: Any = [f"{t:.3f}" for t, _ in rows[feed]]
        validation: Any = [f"{v:.3f}" for _, v in rows[feed]]
        median_train = statistics.median(t for t, _ in rows[feed])
        median_validation = statistics.median(v for _, v in rows[feed])
        print(f"| {label} | **{median_train:.3f}** ({', '.join(train)}) | **{median_validation:.3f}** ({', '.join(validation)}) |")
    print(f"history.json identical in every run: {len(digests) == 1} ({', '.join(sorted(digests))})")


if __name__ == "__main__":
    main()
