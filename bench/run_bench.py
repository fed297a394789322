"""Time `kerasrun train configs/mnist_mlp.yaml` against the plain Keras script, alternating in one run.

    python bench/run_bench.py [--rounds 3] [--data-dir ../shared/data]

Each round runs three programs, each in a fresh process: the plain script with Keras's defaults, the same
script hand-tuned with `--spe 32` (steps_per_execution=32, as kerasrun's config) and kerasrun; the order
rotates every round (plain, tuned, kerasrun; then tuned, kerasrun, plain; ...). Reports per round and as
medians: the fit times, the fit-time ratios kerasrun/plain and kerasrun/tuned, the whole-process-time
ratio, the test accuracies and the load average at the start of the round. Prints Markdown tables and
writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PLAIN_SCRIPT = REPO / "bench" / "plain_mnist_mlp.py"
CONFIG = REPO / "configs" / "mnist_mlp.yaml"
KERASRUN = Path(sys.executable).parent / "kerasrun"
RESULTS = REPO / "bench" / "results" / "latest.json"


def fail(what: str, cmd: list[str], out: subprocess.CompletedProcess[str]) -> None:
    """Stop with the command, its exit code and its output."""
    sys.exit(
        f"error: {what} failed (exit code {out.returncode})\ncommand: {' '.join(cmd)}\n"
        f"--- stdout ---\n{out.stdout}\n--- stderr ---\n{out.stderr}"
    )


def run_plain(env: dict[str, str], spe: int = 1) -> dict[str, float]:
    """The plain Keras script (steps_per_execution `spe`): its own fit time and test accuracy, and the whole-process wall time."""
    cmd = [sys.executable, str(PLAIN_SCRIPT), "--spe", str(spe)]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    process_s = time.perf_counter() - start
    if out.returncode != 0:
        fail("the plain Keras script", cmd, out)
    lines = out.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        fail("reading the plain script's JSON line", cmd, out)
    return {"fit_s": result["fit_s"], "process_s": process_s, "test_accuracy": result["test_accuracy"], "epoch_s": result["epoch_s"]}


def run_kerasrun(env: dict[str, str], checkout: Path | None = None) -> dict[str, float]:
    """kerasrun (imported from `checkout` when given): fit time and test accuracy from run.json, and the whole-process wall time."""
    if checkout is not None:
        env = {**env, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as runs:
        cmd = [str(KERASRUN), "train", str(CONFIG), "--runs-dir", runs, "--progress", "json"]
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        process_s = time.perf_counter() - start
        if out.returncode != 0:
            fail("kerasrun", cmd, out)
        folders = [p for p in Path(runs).iterdir() if p.is_dir()]
        if len(folders) != 1:
            sys.exit(f"error: expected one run folder in {runs}, found {[p.name for p in folders]}")
        info = json.loads((folders[0] / "run.json").read_text())
        epoch_s = [json.loads(line)["seconds"] for line in out.stdout.splitlines() if line.startswith('{"epoch"')]
    return {
        "fit_s": info["timings"]["fit_s"],
        "epoch_s": epoch_s,
        "loop": info.get("loop"),
        "process_s": process_s,
        "test_accuracy": info["metrics"]["sparse_categorical_accuracy"],
    }


def row_of(result: dict[str, Any]) -> dict[str, float]:
    """The reported numbers of one round."""
    plain, tuned, kr = result["plain"], result["tuned"], result["kerasrun"]
    return {
        "plain_fit_s": plain["fit_s"],
        "tuned_fit_s": tuned["fit_s"],
        "kerasrun_fit_s": kr["fit_s"],
        "fit_ratio": kr["fit_s"] / plain["fit_s"],
        "tuned_ratio": kr["fit_s"] / tuned["fit_s"],
        "tuned_last_epoch_s": tuned["epoch_s"][-1],
        "kerasrun_last_epoch_s": kr["epoch_s"][-1],
        "plain_process_s": plain["process_s"],
        "tuned_process_s": tuned["process_s"],
        "kerasrun_process_s": kr["process_s"],
        "process_ratio": kr["process_s"] / plain["process_s"],
        "plain_test_accuracy": plain["test_accuracy"],
        "tuned_test_accuracy": tuned["test_accuracy"],
        "kerasrun_test_accuracy": kr["test_accuracy"],
    }


def table(rows: list[dict[str, Any]], median: dict[str, float]) -> str:
    """Markdown table: one line per round, then the medians."""
    lines = [
        "| round | order | load (1 min) | plain fit | tuned (spe 32) fit | kerasrun fit | **kerasrun / plain** | **kerasrun / tuned** "
        "| last epoch tuned | last epoch kerasrun | plain process | kerasrun process | process ratio | test acc plain / tuned / kerasrun |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def line(label: str, order: str, r: dict[str, Any], bold: bool = False) -> str:
        b = "**" if bold else ""
        return (
            f"| {b}{label}{b} | {order} | {r['load_1min']:.2f} | {r['plain_fit_s']:.2f} s | {r['tuned_fit_s']:.2f} s "
            f"| {r['kerasrun_fit_s']:.2f} s | {b}{r['fit_ratio']:.3f}{b} | {b}{r['tuned_ratio']:.3f}{b} "
            f"| {r['tuned_last_epoch_s']:.3f} s | {r['kerasrun_last_epoch_s']:.3f} s "
            f"| {r['plain_process_s']:.2f} s | {r['kerasrun_process_s']:.2f} s | {r['process_ratio']:.2f} "
            f"| {r['plain_test_accuracy']:.4f} / {r['tuned_test_accuracy']:.4f} / {r['kerasrun_test_accuracy']:.4f} |"
        )

    for r in rows:
        lines.append(line(str(r["round"]), r["order"], r))
    lines.append(line(f"median of {len(rows)}", "", median, bold=True))
    return "\n".join(lines)


def main() -> None:
    """Rotate the three programs for N rounds and report the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="number of rounds (default 3)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="folder holding mnist.npz (default: ../shared/data relative to the repo root)",
    )
    parser.add_argument("--before", type=Path, help="an older kerasrun checkout: timed too, as a fourth program (`before`)")
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit("error: --rounds must be >= 1")
    data_dir = args.data_dir.resolve()
    if not (data_dir / "mnist.npz").is_file():
        sys.exit(f"error: {data_dir / 'mnist.npz'} not found; pass --data-dir DIR (the folder holding mnist.npz)")
    if not KERASRUN.is_file():
        sys.exit(f"error: {KERASRUN} not found; run with the virtualenv's Python (.venv/bin/python)")
    env = {**os.environ, "KERASRUN_DATA_DIR": str(data_dir)}

    programs: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
        "plain": run_plain,
        "tuned": lambda env: run_plain(env, spe=32),
        "kerasrun": run_kerasrun,
    }
    if args.before is not None:  # the same kerasrun command on an older checkout, in the same rotation
        programs["before"] = lambda env: run_kerasrun(env, args.before.resolve())
    names = list(programs)
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for index in range(1, args.rounds + 1):
        shift = (index - 1) % len(names)
        order = names[shift:] + names[:shift]  # every program takes every place in turn
        load = os.getloadavg()
        result: dict[str, Any] = {}
        for name in order:
            result[name] = programs[name](env)
        raw.append({"round": index, "order": order, "load": load, **result})
        row = {"round": index, "order": ", ".join(order), "load_1min": load[0], **row_of(result)}
        if "before" in result:
            row["before_fit_s"] = result["before"]["fit_s"]
            row["after_before_ratio"] = result["kerasrun"]["fit_s"] / result["before"]["fit_s"]
            row["before_tuned_ratio"] = result["before"]["fit_s"] / result["tuned"]["fit_s"]
        rows.append(row)
        print(
            f"round {index}/{args.rounds} ({row['order']}; load {load[0]:.2f}): fit kerasrun {row['kerasrun_fit_s']:.2f} s, "
            f"plain {row['plain_fit_s']:.2f} s ({row['fit_ratio']:.3f}), tuned {row['tuned_fit_s']:.2f} s ({row['tuned_ratio']:.3f})",
            flush=True,
        )

    keys = [k for k in rows[0] if k not in ("round", "order")]  # (with --before, the extra keys too)
    median = {k: statistics.median(r[k] for r in rows) for k in keys}  # ratios: median of the per-round ratios
    print()
    print(table(rows, median))
    if args.before is not None:
        print("\n| round | kerasrun before fit | kerasrun fit | after / before | before / tuned | after / tuned |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in [*rows, {**median, "round": f"median of {len(rows)}"}]:
            print(
                f"| {r['round']} | {r['before_fit_s']:.2f} s | {r['kerasrun_fit_s']:.2f} s | {r['after_before_ratio']:.3f} "
                f"| {r['before_tuned_ratio']:.3f} | {r['tuned_ratio']:.3f} |"
            )
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
                "data_dir": str(data_dir),
                "commands": {
                    "plain": [sys.executable, str(PLAIN_SCRIPT), "--spe", "1"],
                    "tuned": [sys.executable, str(PLAIN_SCRIPT), "--spe", "32"],
                    "kerasrun": [str(KERASRUN), "train", str(CONFIG), "--runs-dir", "<tempdir>", "--progress", "json"],
                },
                "rounds": rows,
                "median": median,
                "raw": raw,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
