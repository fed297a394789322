"""What checkpointing every epoch costs: `kerasrun train configs/mnist_mlp.yaml` with and without checkpoints.

    python bench/run_checkpoint_bench.py [--rounds 5] [--data-dir ../shared/data]

Each round trains the config twice, each in a fresh process, alternating which goes first: with the
default `output.checkpoint` (every epoch) and with `output.checkpoint: false`. Reports per round and
as medians: both fit times (run.json → timings.fit_s), their ratio, and the time the checkpointer
itself took inside the checkpointed run's fit (timings.checkpoint_s: capturing the state and writing
the .npz) as a fraction of that fit time — the direct measure; the ratio of two fit times also
carries the run-to-run noise of this machine. Writes bench/results/checkpoint.json.
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mnist_mlp.yaml"
KERASRUN = Path(sys.executable).parent / "kerasrun"
RESULTS = REPO / "bench" / "results" / "checkpoint.json"


def train(env: dict[str, str], checkpoint: bool) -> dict[str, Any]:
    """One training run in a fresh process: its run.json timings."""
    with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as runs:
        cmd = [str(KERASRUN), "train", str(CONFIG), "--runs-dir", runs, "--progress", "none"]
        if not checkpoint:
            cmd += ["--set", "output.checkpoint=false"]
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode})\n{out.stdout}\n{out.stderr}")
        (run,) = [p for p in Path(runs).iterdir() if p.is_dir()]
        info = json.loads((run / "run.json").read_text())
        files = list((run / "checkpoints").glob("*.npz")) if checkpoint else []
        return {"timings": info["timings"], "checkpoint_bytes": sum(p.stat().st_size for p in files)}


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
        on, off = result[True]["timings"], result[False]["timings"]
        rows.append(
            {
                "first": "checkpoint" if order[0] else "none",
                "fit_s_checkpoint": on["fit_s"],
                "fit_s_none": off["fit_s"],
                "fit_ratio": on["fit_s"] / off["fit_s"],
                "checkpoint_s": on["checkpoint_s"],
                "checkpoint_share": on["checkpoint_s"] / on["fit_s"],
                "checkpoint_bytes": result[True]["checkpoint_bytes"],
            }
        )
    print("| round | first | fit, checkpoint every epoch | fit, no checkpoints | fit ratio | checkpointer time | its share of fit |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for index, row in enumerate(rows, 1):
        print(
            f"| {index} | {row['first']} | {row['fit_s_checkpoint']:.2f} s | {row['fit_s_none']:.2f} s | {row['fit_ratio']:.3f} "
            f"| {1000 * row['checkpoint_s']:.1f} ms | {100 * row['checkpoint_share']:.2f} % |"
        )
    medians = {
        key: statistics.median(row[key] for row in rows)
        for key in ("fit_s_checkpoint", "fit_s_none", "fit_ratio", "checkpoint_s", "checkpoint_share")
    }
    print(
        f"| median | | {medians['fit_s_checkpoint']:.2f} s | {medians['fit_s_none']:.2f} s | {medians['fit_ratio']:.3f} "
        f"| {1000 * medians['checkpoint_s']:.1f} ms | {100 * medians['checkpoint_share']:.2f} % |"
    )
    print(f"checkpoint file: {rows[0]['checkpoint_bytes'] / 1e6:.2f} MB (the latest only is kept)")
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    RESULTS.write_text(json.dumps({"when": stamp, "rounds": rows, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
