"""What drawing curves.png at the end of training costs: `kerasrun train configs/mnist_mlp.yaml` with and without `output.curves`.

    python bench/run_curves_bench.py [--rounds 5] [--data-dir ../shared/data]

Each round trains the config twice, each in a fresh process, alternating which goes first: with the
default `output.curves: true` and with `output.curves: false`. Reports per round and as medians: the
time the curves took (run.json → timings.curves_s: importing matplotlib, drawing, writing the PNG)
against the fit time of the same run, and the whole-process wall time of both runs. curves.png is
drawn after training and evaluation, so it cannot slow an epoch; the process ratio also carries this
machine's run-to-run noise. Writes bench/results/curves.json.
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
CONFIG = REPO / "configs" / "mnist_mlp.yaml"
RESULTS = REPO / "bench" / "results" / "curves.json"


def train(env: dict[str, str], curves: bool) -> dict[str, Any]:
    """One training run in a fresh process (`python -m kerasrun`, so PYTHONPATH picks the code): timings and wall time."""
    with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as runs:
        cmd = [sys.executable, "-m", "kerasrun", "train", str(CONFIG), "--runs-dir", runs, "--progress", "none"]
        cmd += ["--set", f"output.curves={'true' if curves else 'false'}"]
        began = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - began
        if out.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode})\n{out.stdout}\n{out.stderr}")
        (run,) = [p for p in Path(runs).iterdir() if p.is_dir()]
        info = json.loads((run / "run.json").read_text())
        assert (run / "curves.png").exists() == curves
        return {"timings": info["timings"], "wall_s": wall}


def main() -> None:
    """Run the rounds, print a Markdown table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    env = {**os.environ, "KERASRUN_DATA_DIR": args.data_dir, "KERASRUN_HOME": tempfile.mkdtemp(prefix="kerasrun-home-")}
    rows = []
    for index in range(args.rounds):
        order = (True, False) if index % 2 == 0 else (False, True)
        result = {flag: train(env, flag) for flag in order}
        on, off = result[True], result[False]
        rows.append(
            {
                "first": "curves" if order[0] else "none",
                "curves_s": on["timings"]["curves_s"],
                "fit_s": on["timings"]["fit_s"],
                "curves_share_of_fit": on["timings"]["curves_s"] / on["timings"]["fit_s"],
                "wall_s_curves": on["wall_s"],
                "wall_s_none": off["wall_s"],
                "wall_ratio": on["wall_s"] / off["wall_s"],
            }
        )
    print("| round | first | curves.png | fit (same run) | curves / fit | process, curves | process, no curves | process ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for index, row in enumerate(rows, 1):
        print(
            f"| {index} | {row['first']} | {1000 * row['curves_s']:.0f} ms | {row['fit_s']:.2f} s | {100 * row['curves_share_of_fit']:.1f} % "
            f"| {row['wall_s_curves']:.2f} s | {row['wall_s_none']:.2f} s | {row['wall_ratio']:.3f} |"
        )
    keys = ("curves_s", "fit_s", "curves_share_of_fit", "wall_s_curves", "wall_s_none", "wall_ratio")
    medians = {key: statistics.median(row[key] for row in rows) for key in keys}
    print(
        f"| median | | {1000 * medians['curves_s']:.0f} ms | {medians['fit_s']:.2f} s | {100 * medians['curves_share_of_fit']:.1f} % "
        f"| {medians['wall_s_curves']:.2f} s | {medians['wall_s_none']:.2f} s | {medians['wall_ratio']:.3f} |"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    RESULTS.write_text(json.dumps({"when": stamp, "rounds": rows, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
