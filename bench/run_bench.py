"""Time `kerasrun train configs/mnist_mlp.yaml` against the plain Keras script, alternating in one run.

    python bench/run_bench.py [--rounds 3] [--data-dir ../shared/data]

Reports, per round and as medians: both fit times, their ratio, both whole-process times, their ratio,
and both test accuracies. Writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERASRUN = Path(sys.executable).parent / "kerasrun"


def run_plain(env: dict[str, str]) -> dict[str, float]:
    """The plain Keras script: its own fit time and accuracy, plus the whole process time."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(REPO / "bench" / "plain_mnist_mlp.py")], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"fit_s": result["fit_s"], "process_s": wall, "accuracy": result["test_accuracy"]}


def run_kerasrun(env: dict[str, str]) -> dict[str, float]:
    """kerasrun: fit time and accuracy from the run folder's run.json, plus the whole process time."""
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        cmd = [str(KERASRUN), "train", str(REPO / "configs" / "mnist_mlp.yaml"), "--runs-dir", runs, "--progress", "none"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode != 0:
            sys.exit(f"kerasrun failed ({out.returncode}):\n{out.stderr}")
        [run_dir] = list(Path(runs).iterdir())
        info = json.loads((run_dir / "run.json").read_text())
    return {"fit_s": info["timings"]["fit_s"], "process_s": wall, "accuracy": info["metrics"]["sparse_categorical_accuracy"]}


def main() -> None:
    """Alternate the two programs for N rounds and report ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    if not (args.data_dir / "mnist.npz").is_file():
        sys.exit(f"{args.data_dir / 'mnist.npz'} not found: pass --data-dir")
    env = {**os.environ, "KERASRUN_DATA_DIR": str(args.data_dir.resolve())}
    rounds = []
    for index in range(args.rounds):
        order = [("plain", run_plain), ("kerasrun", run_kerasrun)]
        if index % 2:
            order.reverse()  # alternate who goes first, so warm caches favour neither
        result = {name: fn(env) for name, fn in order}
        result["fit_ratio"] = result["kerasrun"]["fit_s"] / result["plain"]["fit_s"]
        result["process_ratio"] = result["kerasrun"]["process_s"] / result["plain"]["process_s"]
        rounds.append(result)
        print(f"round {index + 1}: fit {result['kerasrun']['fit_s']:.2f}s vs {result['plain']['fit_s']:.2f}s (x{result['fit_ratio']:.2f}), "
              f"process {result['kerasrun']['process_s']:.2f}s vs {result['plain']['process_s']:.2f}s (x{result['process_ratio']:.2f})", flush=True)

    def median(path: tuple[str, ...]) -> float:
        values = []
        for r in rounds:
            value = r
            for key in path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    print("\n| | plain Keras (defaults) | kerasrun | kerasrun / plain |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| fit time (median of {args.rounds}) | {median(('plain', 'fit_s')):.2f} s | {median(('kerasrun', 'fit_s')):.2f} s | {median(('fit_ratio',)):.2f} |")
    print(f"| whole process | {median(('plain', 'process_s')):.2f} s | {median(('kerasrun', 'process_s')):.2f} s | {median(('process_ratio',)):.2f} |")
    print(f"| test accuracy | {median(('plain', 'accuracy')):.4f} | {median(('kerasrun', 'accuracy')):.4f} | |")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps({"rounds": rounds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
