"""MNIST as PNG folders: kerasrun's `image_folder` source against a plain Keras script, and against the npz source.

    python bench/run_image_folder_bench.py [--rounds 3] [--epochs 2] [--images /tmp/kerasrun-mnist-png] [--data-dir ../shared/data]

Writes all 70,000 MNIST images as PNGs once (train/<digit>/, test/<digit>/; reused afterwards). Each
round runs, each in a fresh process and alternating which goes first: the plain script
(bench/plain_image_folder.py: image_dataset_from_directory with its defaults + model.fit) and
`kerasrun train bench/image_folder_mnist.yaml`. Reports per round and as medians: the epoch time of
each (fit time / epochs), their ratio kerasrun/plain, kerasrun's one-off decode time (data_s), the
whole-process ratio, and test accuracies; then the same kerasrun config on the npz source, whose
test accuracy the image folder's should match within 0.5 percentage points.
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PLAIN = REPO / "bench" / "plain_image_folder.py"
CONFIG = REPO / "bench" / "image_folder_mnist.yaml"
KERASRUN = [sys.executable, "-m", "kerasrun"]
RESULTS = REPO / "bench" / "results" / "image_folder.json"


def write_pngs(npz: Path, root: Path) -> float:
    """All of MNIST as root/{train,test}/<digit>/<index>.png, unless already complete; seconds spent."""
    if (root / "complete").is_file():
        return 0.0
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from helpers_images import write_image_folder

    start = time.perf_counter()
    with np.load(npz) as data:
        for split in ("train", "test"):
            write_image_folder(data[f"x_{split}"], data[f"y_{split}"], root / split)
    (root / "complete").write_text("")
    return time.perf_counter() - start


def run(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a command; its result and wall time. Stops the benchmark if it fails."""
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({out.returncode})\n{out.stdout}\n{out.stderr}")
    return out, time.perf_counter() - start


def run_plain(images: Path, epochs: int, env: dict[str, str]) -> dict[str, float]:
    """The plain script's epoch time and test accuracy, and its process time."""
    out, process_s = run([sys.executable, str(PLAIN), str(images), "--epochs", str(epochs)], env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"epoch_s": result["fit_s"] / epochs, "process_s": process_s, "test_accuracy": result["test_accuracy"]}


def run_kerasrun(config_text: str, epochs: int, env: dict[str, str]) -> dict[str, float]:
    """kerasrun's epoch time, decode time and test accuracy from run.json, and its process time."""
    with tempfile.TemporaryDirectory(prefix="kerasrun-bench-") as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(config_text)
        runs = Path(folder) / "runs"
        cmd = [*KERASRUN, "train", str(config), "--runs-dir", str(runs), "--progress", "none", "--set", f"train.epochs={epochs}"]
        _, process_s = run(cmd, env)
        info = json.loads(next(runs.glob("*/run.json")).read_text())
    timings = info["timings"]
    return {
        "epoch_s": timings["fit_s"] / epochs,
        "data_s": timings["data_s"],
        "process_s": process_s,
        "test_accuracy": info["metrics"]["accuracy"],
    }


def main() -> None:
    """Run the rounds and print a Markdown table of the medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=Path, default=Path(tempfile.gettempdir()) / "kerasrun-mnist-png")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    written_s = write_pngs(args.data_dir / "mnist.npz", args.images)
    if written_s:
        print(f"wrote 70,000 PNGs to {args.images} in {written_s:.0f} s", file=sys.stderr)
    images_config = CONFIG.read_text()
    env["IMAGES"] = str(args.images.resolve())  # the config reads ${IMAGES}
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        order = ("plain", "kerasrun") if number % 2 == 0 else ("kerasrun", "plain")
        result: dict[str, Any] = {}
        for which in order:
            result[which] = run_plain(args.images, args.epochs, env) if which == "plain" else run_kerasrun(images_config, args.epochs, env)
        result["epoch_ratio"] = result["kerasrun"]["epoch_s"] / result["plain"]["epoch_s"]
        result["process_ratio"] = result["kerasrun"]["process_s"] / result["plain"]["process_s"]
        rounds.append(result)
        print(f"round {number + 1}: {json.dumps(result)}", file=sys.stderr)
    npz_config = images_config.replace("source: image_folder", "source: npz").replace(
        "path: ${IMAGES}/train", f"path: {(args.data_dir / 'mnist.npz').resolve()}"
    )
    npz_lines = [line for line in npz_config.splitlines() if not line.strip().startswith(("test_path", "image_size", "color_mode"))]
    npz_config = "\n".join(npz_lines).replace("preprocess:", "preprocess:\n    - reshape: [28, 28, 1]")
    npz = run_kerasrun(npz_config, args.epochs, env)

    def median(*keys: str) -> float:
        values = [r[keys[0]] if len(keys) == 1 else r[keys[0]][keys[1]] for r in rounds]
        return statistics.median(values)

    summary = {
        "rounds": rounds,
        "npz": npz,
        "median": {
            "plain_epoch_s": median("plain", "epoch_s"),
            "kerasrun_epoch_s": median("kerasrun", "epoch_s"),
            "epoch_ratio": median("epoch_ratio"),
            "kerasrun_decode_s": median("kerasrun", "data_s"),
            "process_ratio": median("process_ratio"),
            "plain_test_accuracy": median("plain", "test_accuracy"),
            "image_folder_test_accuracy": median("kerasrun", "test_accuracy"),
            "npz_test_accuracy": npz["test_accuracy"],
        },
        "cpus": os.cpu_count(),
        "epochs": args.epochs,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    m = summary["median"]
    print("| | plain Keras | kerasrun image_folder |\n|---|---|---|")
    print(f"| epoch time (median of {args.rounds}) | {m['plain_epoch_s']:.2f} s | {m['kerasrun_epoch_s']:.2f} s |")
    print(f"| epoch-time ratio kerasrun/plain | | **{m['epoch_ratio']:.2f}** |")
    print(f"| one-off decode into memory | — | {m['kerasrun_decode_s']:.1f} s |")
    print(f"| whole-process ratio | | {m['process_ratio']:.2f} |")
    print(
        f"| test accuracy | {m['plain_test_accuracy']:.4f} | {m['image_folder_test_accuracy']:.4f} (npz source: {m['npz_test_accuracy']:.4f}) |"
    )


if __name__ == "__main__":
    main()
