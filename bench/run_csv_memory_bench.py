"""Peak memory of one epoch on a streamed CSV as the file grows 4×, measured by the OS (`/usr/bin/time -v`).

    python bench/run_csv_memory_bench.py [--rows 250000] [--columns 32] [--folder /tmp/kerasrun-csv-bench]

Writes two seeded CSV files (ROWS and 4 × ROWS rows of COLUMNS float features and a 10-class text
label; reused afterwards), then trains one epoch on each in a fresh `kerasrun train` process, with
`stream: true` and, for contrast, with the file read into memory. Reports the maximum resident set
size of each process and the growth from the small file to the large one (target for streaming:
< 150 MB). Prints a Markdown table and writes bench/results/csv_memory.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "csv_memory.json"
CONFIG = """
name: csv-memory
seed: 0
data: {{source: csv, path: {path}, target: label, stream: {stream}, test_fraction: 0.05}}
model:
  inputs: {{x: [{columns}]}}
  layers: [{{Dense: {{units: 64, activation: relu}}}}, {{Dense: {{units: 10, activation: softmax}}}}]
compile: {{optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}}
train: {{epochs: 1, batch_size: 256, validation_split: 0.05}}
output: {{save_model: false, checkpoint: off}}
"""


def write_csv(path: Path, rows: int, columns: int) -> None:
    """A seeded table of float features and a 10-class text label, written in chunks (never whole in memory)."""
    if path.is_file():
        return
    rng = np.random.default_rng(0)
    labels = np.array([f"class{k}" for k in range(10)])
    partial = path.with_suffix(".partial")
    with partial.open("w") as f:
        f.write(",".join(f"f{i}" for i in range(columns)) + ",label\n")
        for start in range(0, rows, 50_000):
            x = rng.normal(size=(min(50_000, rows - start), columns))
            y = labels[(x[:, :3].sum(axis=1) * 3).astype(int) % 10]
            f.writelines(",".join(f"{v:.4f}" for v in row) + f",{label}\n" for row, label in zip(x, y, strict=True))
    partial.rename(path)


def peak_rss_mb(path: Path, columns: int, stream: bool) -> float:
    """Maximum resident set size (MB) of `kerasrun train` for one epoch on `path`."""
    with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(CONFIG.format(path=path, stream=str(stream).lower(), columns=columns))
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "kerasrun", "train", str(config), "--runs-dir", folder, "--progress", "none"]
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed\n{out.stdout}\n{out.stderr[-3000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    assert match, out.stderr[-2000:]
    return int(match.group(1)) / 1024


def main() -> None:
    """Write the files, measure, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "kerasrun-csv-bench")
    args = parser.parse_args()
    args.folder.mkdir(exist_ok=True)
    small, large = (args.folder / f"rows{n}x{args.columns}.csv" for n in (args.rows, 4 * args.rows))
    write_csv(small, args.rows, args.columns)
    write_csv(large, 4 * args.rows, args.columns)
    result = {
        "rows": args.rows,
        "columns": args.columns,
        "file_mb": {"small": small.stat().st_size / 2**20, "large": large.stat().st_size / 2**20},
        "stream": {"small": peak_rss_mb(small, args.columns, True), "large": peak_rss_mb(large, args.columns, True)},
        "in_memory": {"small": peak_rss_mb(small, args.columns, False), "large": peak_rss_mb(large, args.columns, False)},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| peak RSS, one epoch | {args.rows:,} rows ({result['file_mb']['small']:.0f} MB) | {4 * args.rows:,} rows ({result['file_mb']['large']:.0f} MB) | growth |"
    )
    print("|---|---|---|---|")
    for mode in ("stream", "in_memory"):
        s, big = result[mode]["small"], result[mode]["large"]
        print(f"| {mode.replace('_', ' ')} | {s:.0f} MB | {big:.0f} MB | **{big - s:+.0f} MB** |")


if __name__ == "__main__":
    main()
