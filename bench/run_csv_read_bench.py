"""Reading a CSV into memory: kerasrun's reader against `np.loadtxt`, in alternating rounds.

    python bench/run_csv_read_bench.py [--rows 200000] [--columns 20] [--rounds 3]

Writes a seeded table of ROWS × COLUMNS numbers (COLUMNS - 1 float features and an integer label) to a
temporary folder, then times, in each round and alternating which goes first, kerasrun's in-memory reader
(`read_csv_table`, the same call `source: csv` makes) and `np.loadtxt(path, delimiter=",", skiprows=1)`.
Checks that both give the same numbers, and prints each round, the median times and the median of the
per-round ratios (target: ≤ 1.5× np.loadtxt).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kerasrun.config.data import CsvData
from kerasrun.data.sources.base import Where
from kerasrun.data.sources.csv import read_csv_table
from kerasrun.errors import Problem


def write_table(path: Path, rows: int, columns: int) -> None:
    """COLUMNS - 1 seeded float features (6 decimals) and an integer label 0–9."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, columns - 1))
    labels = rng.integers(0, 10, rows)
    with path.open("w") as f:
        f.write(",".join(f"f{j}" for j in range(columns - 1)) + ",label\n")
        f.writelines(",".join(f"{v:.6f}" for v in row) + f",{label}\n" for row, label in zip(x, labels, strict=True))


def time_kerasrun(path: Path) -> tuple[float, np.ndarray]:
    """Seconds for kerasrun's reader, and the table it read (features then label, as float64)."""
    where = Where(locate=lambda loc, message, hint: Problem(key=str(loc), message=message, hint=hint), resolve_path=Path, seed=0)
    spec = CsvData(source="csv", path=str(path), target="label")
    start = time.perf_counter()
    split, _ = read_csv_table(path, spec, where, ("path",))
    seconds = time.perf_counter() - start
    return seconds, np.column_stack([np.asarray(split.x, dtype=np.float64), np.asarray(split.y, dtype=np.float64)])


def time_loadtxt(path: Path) -> tuple[float, np.ndarray]:
    """Seconds for np.loadtxt on the same file, and its table."""
    start = time.perf_counter()
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return time.perf_counter() - start, table


def main() -> None:
    """Write the table, time the rounds, print them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kerasrun-csv-read-") as folder:
        path = Path(folder) / "table.csv"
        write_table(path, args.rows, args.columns)
        print(f"{args.rows:,} × {args.columns} table, {path.stat().st_size / 2**20:.1f} MB")
        print("| round | first | kerasrun | np.loadtxt | ratio |")
        print("| ---: | --- | ---: | ---: | ---: |")
        ours, theirs, ratios = [], [], []
        for round_ in range(1, args.rounds + 1):
            # Alternate the order so that neither always reads the file from a warmer cache.
            if round_ % 2:
                (k, ktable), (n, ntable) = time_kerasrun(path), time_loadtxt(path)
            else:
                (n, ntable), (k, ktable) = time_loadtxt(path), time_kerasrun(path)
            # kerasrun keeps features as float32 (as before the fast path): compare at that precision.
            assert np.array_equal(ktable, np.column_stack([ntable[:, :-1].astype(np.float32), ntable[:, -1]]).astype(np.float64))
            ours.append(k)
            theirs.append(n)
            ratios.append(k / n)
            print(f"| {round_} | {'kerasrun' if round_ % 2 else 'loadtxt'} | {k:.2f} s | {n:.2f} s | {k / n:.2f} |")
        print(
            f"| **median of {args.rounds}** | | {statistics.median(ours):.2f} s | {statistics.median(theirs):.2f} s "
            f"| **{statistics.median(ratios):.2f}** |"
        )


if __name__ == "__main__":
    main()
