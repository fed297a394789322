"""A corpus of hostile data files and run folders, built in a temporary folder: FIFOs, links to /dev/zero, loops, truncations.

Each case is a function `build(root) -> args` that makes its files under `root` and returns the
`kerasrun` arguments that read them. tests/data/test_hostile_files.py and tests/runs/test_hostile_runs.py
run them; `python tests/helpers_hostile.py` runs the whole corpus in real processes and counts how each
ended (segfault / hang / exit 1 / exit 2 / exit 0).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
from helpers import TINY  # noqa: E402

Case = Callable[[Path], list[str]]
IMAGE_BYTES = 8  # side of the tiny PNGs


def write_config(root: Path, data: dict[str, Any], model: dict[str, Any] | None = None, **train: Any) -> Path:
    """A config reading `data`, with a model that fits it (TINY's by default)."""
    config = copy.deepcopy(TINY)
    config["data"] = data
    if model is not None:
        config["model"] = model
    config["train"] = {"epochs": 1, "batch_size": 4, **train}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


IMAGE_MODEL = {
    "inputs": {"x": [IMAGE_BYTES, IMAGE_BYTES, 1]},
    "layers": [{"Flatten": {}}, {"Dense": {"units": 2, "activation": "softmax"}}],
}
TEXT_MODEL = {
    "inputs": {"review": {"shape": [], "dtype": "string"}},
    "layers": [
        {"TextVectorization": {"max_tokens": 50, "output_sequence_length": 4}},
        {"Embedding": {"input_dim": 50, "output_dim": 4}},
        {"GlobalAveragePooling1D": {}},
        {"Dense": {"units": 2, "activation": "softmax"}},
    ],
}


def png(seed: int) -> bytes:
    """A tiny grayscale PNG."""
    import zlib

    pixels = np.random.default_rng(seed).integers(0, 255, (IMAGE_BYTES, IMAGE_BYTES), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", IMAGE_BYTES, IMAGE_BYTES, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def image_folder(root: Path, streamed: bool = False) -> tuple[Path, dict[str, Any]]:
    """train/{a,b}/*.png, 4 each, and its data section."""
    for label in ("a", "b"):
        (root / "train" / label).mkdir(parents=True)
        for i in range(4):
            (root / "train" / label / f"{i}.png").write_bytes(png(i + 10 * len(label)))
    data: dict[str, Any] = {"source": "image_folder", "path": "train", "image_size": [IMAGE_BYTES, IMAGE_BYTES], "color_mode": "grayscale"}
    if streamed:
        data["memory_limit_mb"] = 0
    return root / "train", data


def text_folder(root: Path) -> tuple[Path, dict[str, Any]]:
    """train/{neg,pos}/*.txt, 4 each, and its data section."""
    for label in ("neg", "pos"):
        (root / "train" / label).mkdir(parents=True)
        for i in range(4):
            (root / "train" / label / f"{i}.txt").write_text(f"{label} words number {i}\n")
    return root / "train", {"source": "text_folder", "path": "train"}


def data_args(config: Path) -> list[str]:
    """`kerasrun data CONFIG` without the throughput measurement."""
    return ["data", str(config), "--seconds", "0", "--json"]


def smoke_args(config: Path, root: Path) -> list[str]:
    """A one-epoch training into root/runs (what reveals decoding problems of texts: TextVectorization's adapt)."""
    return ["train", str(config), "--runs-dir", str(root / "runs"), "--progress", "none"]


def image_case(hostile: Callable[[Path], object], streamed: bool = False) -> Case:
    """An image folder with one hostile entry made by `hostile(class folder)`."""

    def build(root: Path) -> list[str]:
        folder, data = image_folder(root, streamed)
        hostile(folder / "a")
        return data_args(write_config(root, data, IMAGE_MODEL))

    return build


def text_case(hostile: Callable[[Path], object], train: bool = False) -> Case:
    """A text folder with one hostile entry made by `hostile(class folder)`."""

    def build(root: Path) -> list[str]:
        folder, data = text_folder(root)
        hostile(folder / "neg")
        config = write_config(root, data, TEXT_MODEL)
        return smoke_args(config, root) if train else data_args(config)

    return build


def dev_zero(name: str) -> Callable[[Path], object]:
    return lambda folder: (folder / name).symlink_to("/dev/zero")


def fifo(name: str) -> Callable[[Path], object]:
    return lambda folder: os.mkfifo(folder / name)


def loop_class(folder: Path) -> None:
    """A class folder that is a symlink to itself (ELOOP), beside the real ones."""
    (folder.parent / "c").symlink_to(folder.parent / "c")


def loop_below(folder: Path) -> None:
    """A link inside a class folder pointing back at the class folder."""
    (folder / "again").symlink_to(folder, target_is_directory=True)


def encoded(text: str, encoding: str) -> Callable[[Path], object]:
    return lambda folder: (folder / "odd.txt").write_bytes(text.encode(encoding))


def invalid_utf8(folder: Path) -> None:
    (folder / "odd.txt").write_bytes(b"caf\xc3 \xff\xfe broken \x80 bytes\n")


def csv_case(header_columns: int, streamed: bool) -> Case:
    """A CSV whose header has `header_columns` columns (10 M: a 100 MB header line)."""

    def build(root: Path) -> list[str]:
        path = root / "wide.csv"
        with path.open("w") as f:
            f.write(",".join(f"c{i}" for i in range(header_columns - 1)) + ",label\n")
            f.write(",".join("1" for _ in range(header_columns - 1)) + ",0\n")
        return data_args(write_config(root, {"source": "csv", "path": "wide.csv", "target": "label", "stream": streamed}))

    return build


def csv_nan_weight(root: Path) -> list[str]:
    """A streamed CSV whose sample_weight column holds NaN."""
    rows = ["a,b,w,label"] + [f"{i},{i % 3},{'nan' if i == 5 else 1.0},{i % 3}" for i in range(12)]
    (root / "w.csv").write_text("\n".join(rows) + "\n")
    data = {"source": "csv", "path": "w.csv", "target": "label", "sample_weight": "w", "stream": True}
    return data_args(write_config(root, data))


def tfrecord_config(root: Path, files: str) -> list[str]:
    data = {
        "source": "tfrecord",
        "files": files,
        "features": {"x": {"shape": [2], "dtype": "float32"}, "label": {"shape": [], "dtype": "int64"}},
        "inputs": ["x"],
        "targets": ["label"],
    }
    return data_args(write_config(root, data))


def tfrecord_frame(payload: bytes, length: int | None = None) -> bytes:
    """One TFRecord frame: length, masked crc32c of the length, payload, masked crc32c of the payload."""
    size = struct.pack("<Q", len(payload) if length is None else length)
    return size + struct.pack("<I", masked_crc(size)) + payload + struct.pack("<I", masked_crc(payload))


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bitwise: for the few bytes of a test file."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def example(x: list[float], label: int) -> bytes:
    """A serialized tf.train.Example, written by hand (protobuf wire format) so that building the corpus needs no TensorFlow."""

    def field(number: int, kind: int, body: bytes) -> bytes:
        return varint(number << 3 | kind) + (varint(len(body)) + body if kind == 2 else body)

    floats = field(2, 2, field(1, 2, struct.pack(f"<{len(x)}f", *x)))  # Feature.float_list.value (packed)
    ints = field(3, 2, field(1, 2, varint(label)))  # Feature.int64_list.value (packed)

    def entry(name: str, feature: bytes) -> bytes:
        return field(1, 2, field(1, 2, name.encode()) + field(2, 2, feature))

    return field(1, 2, entry("x", floats) + entry("label", ints))


def varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def tfrecord_huge_length(root: Path) -> list[str]:
    """A shard whose second record declares 2**60 bytes (its length CRC correct, so TensorFlow believes it)."""
    good = b"".join(tfrecord_frame(example([1.0, 2.0], i % 2)) for i in range(4))
    (root / "huge.tfrecord").write_bytes(good + tfrecord_frame(b"x" * 16, length=2**60))
    return tfrecord_config(root, "huge.tfrecord")


def tfrecord_not_example(root: Path) -> list[str]:
    """Well-framed records whose payloads are not tf.train.Example protos."""
    (root / "junk.tfrecord").write_bytes(b"".join(tfrecord_frame(bytes(range(i, i + 40))) for i in range(4)))
    return tfrecord_config(root, "junk.tfrecord")


def keras_truncated_npz(root: Path) -> list[str]:
    """data.dir holding a truncated mnist.npz."""
    (root / "ds").mkdir()
    np.savez(
        root / "ds" / "mnist.npz", x_train=np.zeros((8, 2), np.float32), y_train=np.zeros(8), x_test=np.zeros((4, 2)), y_test=np.zeros(4)
    )
    whole = (root / "ds" / "mnist.npz").read_bytes()
    (root / "ds" / "mnist.npz").write_bytes(whole[: len(whole) // 2])
    return data_args(write_config(root, {"source": "keras", "name": "mnist", "dir": "ds"}))


def keras_truncated_idx(root: Path, cut: str) -> list[str]:
    """data.dir holding fashion-mnist's four .gz files, one of them truncated (`gzip`: mid-stream, `idx`: a short payload)."""
    import gzip

    folder = root / "ds" / "fashion-mnist"
    folder.mkdir(parents=True)
    for split, count in (("train", 8), ("t10k", 4)):
        labels = b"\x00\x00\x08\x01" + struct.pack(">I", count) + bytes(count)
        images = b"\x00\x00\x08\x03" + struct.pack(">III", count, 28, 28) + bytes(count * 28 * 28)
        if split == "train" and cut == "idx":
            images = images[: len(images) // 2]
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
        packed = gzip.compress(images)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2] if split == "train" and cut == "gzip" else packed)
    return data_args(write_config(root, {"source": "keras", "name": "fashion_mnist", "dir": "ds"}))


DATA_CASES: dict[str, Case] = {
    "image-dev-zero": image_case(dev_zero("zero.png")),
    "image-dev-zero-streamed": image_case(dev_zero("zero.png"), streamed=True),
    "image-fifo": image_case(fifo("x.png")),
    "image-fifo-streamed": image_case(fifo("x.png"), streamed=True),
    "image-class-symlink-loop": image_case(loop_class),
    "image-symlink-loop-below-class": image_case(loop_below),
    "text-dev-zero": text_case(dev_zero("zero.txt")),
    "text-fifo": text_case(fifo("x.txt")),
    "text-class-symlink-loop": text_case(loop_class),
    "text-latin-1": text_case(encoded("café crème brûlée\n", "latin-1"), train=True),
    "text-utf-16": text_case(encoded("a review in UTF-16\n", "utf-16"), train=True),
    "text-invalid-utf-8": text_case(invalid_utf8, train=True),
    "csv-wide-header": csv_case(10_000_000, streamed=False),
    "csv-wide-header-streamed": csv_case(10_000_000, streamed=True),
    "csv-streamed-nan-sample-weight": csv_nan_weight,
    "tfrecord-huge-record-length": tfrecord_huge_length,
    "tfrecord-not-example": tfrecord_not_example,
    "keras-truncated-npz": keras_truncated_npz,
    "keras-truncated-gzip": lambda root: keras_truncated_idx(root, "gzip"),
    "keras-truncated-idx": lambda root: keras_truncated_idx(root, "idx"),
}


# Run folders: one completed tiny run (trained once), copied and broken one way per case.


def completed_run(cache: Path) -> Path:
    """A completed tiny run (1 epoch), trained once into `cache` in a real process."""
    runs = cache / "runs"
    found = sorted(runs.glob("*/model.keras")) if runs.is_dir() else []
    if found:
        return found[0].parent
    config = cache / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 1}}, sort_keys=False))
    done = kerasrun(["train", str(config), "--runs-dir", str(runs), "--progress", "none"])
    assert done.returncode == 0, done.stderr
    return next(runs.glob("*/model.keras")).parent


def run_folders(root: Path, good: Path, breaker: Callable[[Path], object]) -> Path:
    """root/runs holding a copy of `good` and a copy broken by `breaker` (named so that it sorts between two good ones)."""
    runs = root / "runs"
    runs.mkdir()
    shutil.copytree(good, runs / "20000101-000000-good")
    shutil.copytree(good, runs / "20000101-000001-bad")
    shutil.copytree(good, runs / "20000101-000002-good")
    breaker(runs / "20000101-000001-bad")
    return runs


def replace_with_fifo(name: str, of_file: bool = False) -> Callable[[Path], object]:
    """`name` in a run folder (or, `of_file`, the file itself) replaced by a FIFO."""

    def breaker(run: Path) -> None:
        path = run if of_file else run / name
        path.unlink()
        os.mkfifo(path)

    return breaker


def replace_with_link(name: str, target: str) -> Callable[[Path], object]:
    def breaker(run: Path) -> None:
        (run / name).unlink()
        (run / name).symlink_to(target)

    return breaker


def deep_json(name: str) -> Callable[[Path], object]:
    return lambda run: (run / name).write_text("[" * 40_000 + "]" * 40_000)


def alias_bomb(run: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (run / "config.yaml").write_text("\n".join(lines) + "\ntrain: {epochs: *a9}\n")


def edit_run_json(**changes: Any) -> Callable[[Path], object]:
    """run.json with fields changed (unsigned: listing does not check signatures)."""

    def breaker(run: Path) -> None:
        info = json.loads((run / "run.json").read_text())
        info.update(changes)
        (run / "run.json").write_text(json.dumps(info))

    return breaker


HOST = os.uname().nodename
RUN_BREAKERS: dict[str, Callable[[Path], object]] = {
    "run.json-fifo": replace_with_fifo("run.json"),
    "history.json-fifo": replace_with_fifo("history.json"),
    "config.yaml-fifo": replace_with_fifo("config.yaml"),
    "config.yaml-alias-bomb": alias_bomb,
    "run.json-dev-zero": replace_with_link("run.json", "/dev/zero"),
    "history.json-dev-zero": replace_with_link("history.json", "/dev/zero"),
    "run.json-deep": deep_json("run.json"),
    "history.json-deep": deep_json("history.json"),
    "metrics.json-deep": deep_json("metrics.json"),
    "pid-not-a-number": edit_run_json(status="running", pid="forty-two", host=HOST),
    "pid-huge": edit_run_json(status="running", pid=2**80, host=HOST),
    "timestamp-naive": edit_run_json(status="running", host="elsewhere", heartbeat="2020-01-01T00:00:00", started="2020-01-01T00:00:00"),
    "timestamps-mixed": edit_run_json(started="2020-01-01T00:00:00", ended="2020-01-01T00:05:00+00:00"),
}


def listing_case(breaker: Callable[[Path], object], command: str, good: Path) -> Case:
    """`runs`, `compare` or `plot` over a runs folder where one run is broken."""

    def build(root: Path) -> list[str]:
        runs = run_folders(root, good, breaker)
        folders = sorted(str(p) for p in runs.iterdir())
        if command == "runs":
            return ["runs", "--runs-dir", str(runs)]
        if command == "compare":
            return ["compare", *folders]
        return ["plot", *folders, "-o", str(root / "curves.png")]

    return build


def use_cases(good: Path) -> dict[str, Case]:
    """`predict` to a bad output path; `evaluate` on a broken model.keras."""

    def copy_run(root: Path) -> Path:
        shutil.copytree(good, root / "run")
        return root / "run"

    def predict_to(where: Callable[[Path], Path]) -> Case:
        def build(root: Path) -> list[str]:
            run = copy_run(root)
            np.save(root / "x.npy", np.zeros((3, 2), np.float32))
            return ["predict", str(run), "-i", str(root / "x.npy"), "-o", str(where(root))]

        return build

    def folder_named(root: Path) -> Path:
        (root / "out.npy").mkdir()
        return root / "out.npy"

    def evaluate_with(damage: Callable[[Path], object]) -> Case:
        def build(root: Path) -> list[str]:
            run = copy_run(root)
            damage(run / "model.keras")
            return ["evaluate", str(run)]

        return build

    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def mismatched(path: Path) -> None:
        """Another model's file (a different layer width): what a copied-over model.keras looks like."""
        import zipfile

        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        config = json.loads(members["config.json"])
        text = json.dumps(config).replace('"units": 8', '"units": 5')
        with zipfile.ZipFile(path, "w") as archive:
            for name, body in members.items():
                archive.writestr(name, text if name == "config.json" else body)

    return {
        "predict-output-in-missing-folder": predict_to(lambda root: root / "nowhere" / "out.npy"),
        "predict-output-is-a-folder": predict_to(folder_named),
        "evaluate-truncated-model": evaluate_with(truncate),
        "evaluate-empty-model": evaluate_with(lambda path: path.write_bytes(b"")),
        "evaluate-random-model": evaluate_with(lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096))),
        "evaluate-mismatched-model": evaluate_with(mismatched),
        "evaluate-model-is-a-fifo": evaluate_with(replace_with_fifo("model.keras", of_file=True)),
    }


def all_cases(good: Path) -> dict[str, Case]:
    """Every case of the corpus, by name."""
    cases = dict(DATA_CASES)
    for name, breaker in RUN_BREAKERS.items():
        for command in ("runs", "compare", "plot"):
            cases[f"{command}:{name}"] = listing_case(breaker, command, good)
    cases.update(use_cases(good))
    return cases


def kerasrun(args: list[str], timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m kerasrun ARGS` in a real process (this checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "kerasrun", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit_memory,  # a reader that slurps /dev/zero must not take the machine's memory with it
    )


def limit_memory() -> None:
    """At most MEMORY_LIMIT of address space for a corpus process (TensorFlow reserves ~3 GB of it at start)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


MEMORY_LIMIT = 8 * 2**30


def outcome(args: list[str], cwd: Path, timeout: float) -> tuple[str, str]:
    """How a run ended: `segfault`, `hang`, `exit N`, `signal N`; and the last line of its stderr."""
    try:
        done = kerasrun(args, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return "hang", f"no exit within {timeout:.0f} s"
    if done.returncode == -11:
        return "segfault", ""
    if done.returncode < 0:
        return f"signal {-done.returncode}", ""
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if "Traceback" in done.stderr or "Traceback" in done.stdout:
        last = "traceback: " + last
    return f"exit {done.returncode}", last


if __name__ == "__main__":  # python tests/helpers_hostile.py [WORK_DIR] [NAME_FILTER]
    import tempfile
    from collections import Counter

    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="hostile-"))
    wanted = sys.argv[2] if len(sys.argv) > 2 else ""
    (work / "cache").mkdir(parents=True, exist_ok=True)
    good = completed_run(work / "cache")
    counts: Counter[str] = Counter()
    for name, build in all_cases(good).items():
        if wanted not in name:
            continue
        root = work / name.replace(":", "-")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        args = build(root)
        how, why = outcome(args, root, timeout=120)
        counts[how] += 1
        print(f"{how:10} {name:45} {why[:150]}", flush=True)
    print(dict(counts))
