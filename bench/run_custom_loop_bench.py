"""Custom-loop speed: the seed's eager loop, the same loop in tf.function, kerasrun custom, kerasrun fit.

    python bench/run_custom_loop_bench.py [--rounds 3] [--data-dir ../shared/data]

All four train one epoch of MLP-512 + Dropout on 50,000 MNIST images (batch 32, RMSprop) and validate on
10,000, alternating in one run (the order rotates every round). Fit time is each program's own timing of
its training + validation loop (kerasrun: run.json timings.fit_s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERASRUN = Path(sys.executable).parent / "kerasrun"


def seed_loop(env: dict[str, str], *flags: str) -> dict[str, float]:
    """The seed's loop script: its fit time and accuracies."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "seed_custom_loop.py"), *flags], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"fit_s": result["fit_s"], "train_accuracy": result["train_accuracy"]}


def kerasrun(env: dict[str, str], loop: str) -> dict[str, float]:
    """kerasrun on configs/mnist_custom_loop.yaml for one epoch with the given loop."""
    with tempfile.TemporaryDirectory() as runs:
        cmd = [
            str(KERASRUN),
            "train",
            str(REPO / "configs" / "mnist_custom_loop.yaml"),
            "--runs-dir",
            runs,
            "--progress",
            "none",
            "--set",
            "train.epochs=1",
            "--set",
            f"train.loop={loop}",
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"kerasrun failed:\n{out.stderr}")
        [run_dir] = list(Path(runs).iterdir())
        info = json.loads((run_dir / "run.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
    return {"fit_s": info["timings"]["fit_s"], "train_accuracy": history["sparse_categorical_accuracy"][0]}


PROGRAMS = {
    "seed loop, eager": lambda env: seed_loop(env),
    "seed loop, tf.function": lambda env: seed_loop(env, "--function"),
    "kerasrun custom": lambda env: kerasrun(env, "custom"),
    "kerasrun fit": lambda env: kerasrun(env, "fit"),
}


def main() -> None:
    """Run the four programs in rotating order and print medians and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    env = {**os.environ, "KERASRUN_DATA_DIR": str(args.data_dir.resolve())}
    names = list(PROGRAMS)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for index in range(args.rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            results[name].append(PROGRAMS[name](env))
        print(f"round {index + 1}: " + ", ".join(f"{n} {results[n][-1]['fit_s']:.2f}s" for n in names), flush=True)
    median = {name: statistics.median(r["fit_s"] for r in results[name]) for name in names}
    print(f"\n| program | fit time (median of {args.rounds}) | train accuracy (median) |")
    print("| --- | ---: | ---: |")
    for name in names:
        print(f"| {name} | {median[name]:.2f} s | {statistics.median(r['train_accuracy'] for r in results[name]):.4f} |")
    print(f"\nkerasrun custom / kerasrun fit: {median['kerasrun custom'] / median['kerasrun fit']:.2f}")
    print(f"seed eager / kerasrun custom: {median['seed loop, eager'] / median['kerasrun custom']:.1f}x")
    print(f"seed tf.function / kerasrun custom: {median['seed loop, tf.function'] / median['kerasrun custom']:.1f}x")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "custom_loop_latest.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
