"""Bytes of TFRecord data each process reads: one `kerasrun train` process against each worker of `kerasrun launch --workers 2`.

    python bench/tfrecord_bytes.py [--examples 20000] [--shards 8] [--epochs 2] [--workers 2] [--before REV]

Writes --examples MNIST digits (../shared/data/mnist.npz, pixels as float32 features) into --shards
uncompressed TFRecord files, then trains the same MLP on them (no validation or test split: every
epoch reads every record once) as (a) one process, `runtime.strategy: none`, and (b) `kerasrun launch
--workers N` with `runtime.strategy: multi_worker`. Each run is traced with `strace -f --seccomp-bpf
-e read,pread64,clone,...` and the bytes the kernel returned from reads of *.tfrecord files are summed
per process: a thread's reads count for the worker process it belongs to (found from the clone calls).
With `--before REV`, arm (b) also runs from a checkout of REV (e.g. the commit before file sharding).

Reports each worker's bytes / the one process's bytes (#19 item 8's target: <= 0.6 with 2 workers)
and, in records, what each pass read. Needs strace; writes bench/results/tfrecord_bytes.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "tfrecord_bytes.json"
MNIST = Path(os.environ.get("KERASRUN_DATA_DIR", REPO.parent / "shared" / "data")) / "mnist.npz"
TRACED = "read,pread64,clone,clone3,fork,vfork"
CALL = re.compile(r"^(\d+)\s+(read|pread64|clone3?|v?fork)\((?:(\d+)<([^>]*)>)?.*?(?:\)\s+=\s+(-?\d+)|<unfinished \.\.\.>)")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (read|pread64|clone3?|v?fork) resumed>.*\)\s+=\s+(-?\d+)")


def write_shards(folder: Path, examples: int, shards: int) -> int:
    """The first `examples` MNIST training digits in `shards` TFRecord files (example i in file i % shards); their total size."""
    import tensorflow as tf

    with np.load(MNIST) as data:
        x, y = data["x_train"][:examples], data["y_train"][:examples]
    folder.mkdir(parents=True)
    writers = [tf.io.TFRecordWriter(str(folder / f"part-{k:02d}.tfrecord")) for k in range(shards)]
    for i, (pixels, digit) in enumerate(zip(x, y, strict=True)):
        feature = {
            "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=(pixels.ravel() / np.float32(255)).astype(np.float32))),
            "digit": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(digit)])),
        }
        writers[i % shards].write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    for writer in writers:
        writer.close()
    return sum(path.stat().st_size for path in folder.iterdir())


def write_config(folder: Path, epochs: int, strategy: str) -> Path:
    """The MLP on the shards, every record read once per epoch (no split held out)."""
    config: dict[str, Any] = {
        "name": f"bytes-{strategy}",
        "seed": 1,
        "data": {
            "source": "tfrecord",
            "files": "shards/part-*.tfrecord",
            "features": {"pixels": {"dtype": "float32", "shape": [784]}, "digit": {"dtype": "int64", "shape": []}},
            "inputs": ["pixels"],
            "targets": ["digit"],
        },
        "model": {
            "inputs": {"pixels": [784]},
            "layers": [{"Dense": {"units": 64, "activation": "relu"}}, {"Dense": {"units": 10, "activation": "softmax"}}],
        },
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "train": {"epochs": epochs, "batch_size": 64},
        "runtime": {"strategy": strategy},
        "output": {"save_model": False, "curves": False},
    }
    path = folder / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def traced_bytes(command: list[str], cwd: Path, log: Path, env: dict[str, str]) -> dict[int, int]:
    """Run `command` under strace; bytes read from *.tfrecord files by each process directly below the traced one (or by it)."""
    subprocess.run(
        ["strace", "-f", "--seccomp-bpf", "-y", "-e", f"trace={TRACED}", "-o", str(log), *command],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
    )
    parent: dict[int, int] = {}
    pending: dict[int, tuple[str, bool]] = {}  # a thread's unfinished call: its name, and whether it reads a shard
    read: dict[int, int] = defaultdict(int)
    root = None

    def count(tid: int, call: str, shard: bool, result: int) -> None:
        if call.startswith(("clone", "fork", "vfork")):
            parent[result] = tid  # a new thread or process, made by this one
        elif shard:
            read[tid] += max(0, result)

    for line in log.read_text(errors="replace").splitlines():
        if match := CALL.match(line):
            tid, call = int(match.group(1)), match.group(2)
            root = tid if root is None else root
            shard = (match.group(4) or "").endswith(".tfrecord")
            if match.group(5) is None:
                pending[tid] = (call, shard)
            else:
                count(tid, call, shard, int(match.group(5)))
        elif (match := RESUMED.match(line)) and (started := pending.pop(int(match.group(1)), None)) is not None:
            count(int(match.group(1)), started[0], started[1], int(match.group(3)))
    per_process: dict[int, int] = defaultdict(int)
    for tid, nbytes in read.items():
        top = tid
        while parent.get(top) not in (None, root):  # up to the process below the launcher (or the launcher itself)
            top = parent[top]
        per_process[top] += nbytes
    return dict(per_process)


def checkout(rev: str, folder: Path) -> Path:
    """A work tree of REPO at `rev`, and beside it a folder for PYTHONPATH whose sitecustomize makes every process import it.

    An editable install's import finder comes before PYTHONPATH; sitecustomize (run after it is
    installed, in every process `launch` starts too) takes it out again.
    """
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), rev], check=True, capture_output=True)
    site = folder.with_name(folder.name + "-site")
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
        f"sys.path.insert(0, {str(folder)!r})\n"
    )
    return site


def main() -> None:
    """Write the shards, trace both arms, report bytes per worker against the one process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before", help="also run the workers from a checkout of this revision")
    parser.add_argument("--keep", type=Path, help="copy the strace logs into this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kerasrun-bytes-") as tmp:
        folder = Path(tmp)
        size = write_shards(folder / "shards", args.examples, args.shards)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
        python = [sys.executable, "-m", "kerasrun"]
        one = traced_bytes(
            [*python, "train", str(write_config(folder, args.epochs, "none")), "--runs-dir", "runs", "--progress", "none"],
            folder,
            folder / "one.log",
            env,
        )
        multi = write_config(folder, args.epochs, "multi_worker")
        launch = [*python, "launch", "--workers", str(args.workers), str(multi), "--runs-dir", "runs", "--progress", "none"]
        arms = {"one process": one, "workers": traced_bytes(launch, folder, folder / "workers.log", env)}
        if args.before:
            old = checkout(args.before, folder / "before")
            try:
                where = subprocess.run(
                    [sys.executable, "-c", "import kerasrun; print(kerasrun.__file__)"],
                    env={**env, "PYTHONPATH": str(old)},
                    cwd=folder,  # as the runs: python puts the working folder first on sys.path
                    capture_output=True,
                    text=True,
                )
                assert where.stdout.startswith(str(folder / "before")), f"the checkout is not what runs: {where.stdout}"
                arms[f"workers at {args.before}"] = traced_bytes(launch, folder, folder / "before.log", {**env, "PYTHONPATH": str(old)})
            finally:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder / "before")], check=False, capture_output=True
                )
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for log in folder.glob("*.log"):
                shutil.copy(log, args.keep / log.name)
    single = sum(one.values())
    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "examples": args.examples,
        "shards": args.shards,
        "epochs": args.epochs,
        "workers": args.workers,
        "data_set_bytes": size,
        "one_process_bytes": single,
        "one_process_passes": round(single / size, 3),
        "arms": {name: sorted(counts.values(), reverse=True) for name, counts in arms.items()},
        "ratio_per_worker": {
            name: [round(c / single, 3) for c in sorted(counts.values(), reverse=True)]
            for name, counts in arms.items()
            if name != "one process"
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
