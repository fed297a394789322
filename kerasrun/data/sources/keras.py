"""`source: keras`: a keras.datasets dataset, read offline from a folder when it is there."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from kerasrun.config.data import KerasData
from kerasrun.data.arrays import Data, Split
from kerasrun.data.sources.base import Where
from kerasrun.data.sources.npz import open_npz
from kerasrun.errors import ConfigError, DataUnavailableError, first_line
from kerasrun.imports import suggest

DATA_DIR_ENV = "KERASRUN_DATA_DIR"
# Keras datasets whose original files Keras reads from a subfolder of its cache (name -> subfolder, files).
RAW_KERAS_FILES = {
    "fashion_mnist": (
        "fashion-mnist",
        ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
    ),
}


def read(spec: KerasData, where: Where) -> Data:
    """A keras.datasets dataset: `<dir>/<name>.npz`, Keras's raw files under `<dir>`, or Keras's download."""
    from kerasrun._tf import keras

    module = getattr(keras.datasets, spec.name, None)
    if module is None or not hasattr(module, "load_data"):
        known = [n for n in dir(keras.datasets) if hasattr(getattr(keras.datasets, n), "load_data")]
        raise ConfigError(where.problem(("name",), f"keras.datasets has no dataset `{spec.name}`", suggest(spec.name, known)))
    data_dir = where.resolve_path(spec.dir) if spec.dir else (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else None)
    if data_dir is not None:
        npz = data_dir / f"{spec.name}.npz"
        if npz.is_file():
            with open_npz(npz, where, ("name",)) as arrays:
                missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
                if missing:
                    raise ConfigError(where.problem(("name",), f"{npz} lacks arrays {missing}; it has {sorted(arrays.keys())}"))
                return Data(Split(arrays["x_train"], arrays["y_train"]), test=Split(arrays["x_test"], arrays["y_test"]), data_dir=data_dir)
        if spec.name in RAW_KERAS_FILES:
            subdir, files = RAW_KERAS_FILES[spec.name]
            paths = [data_dir / subdir / f for f in files]
            if all(p.is_file() for p in paths):
                y_train, x_train, y_test, x_test = (read_idx_gz(p, where) for p in paths)
                return Data(Split(x_train, y_train), test=Split(x_test, y_test), data_dir=data_dir)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # Keras raises plain Exception on download failure
        files_wanted = f"`{spec.name}.npz` (keys x_train, y_train, x_test, y_test)"
        if spec.name in RAW_KERAS_FILES:
            subdir, files = RAW_KERAS_FILES[spec.name]
            files_wanted += f" or {subdir}/{{{', '.join(files)}}}"
        looked = f"; looked in {data_dir}" if data_dir else ""
        raise DataUnavailableError(
            where.problem(
                ("name",),
                f"dataset `{spec.name}` is not available offline and Keras could not download it ({first_line(exc)[:160]}){looked}",
                hint=f"put {files_wanted} in a folder and set data.dir or {DATA_DIR_ENV} to it",
            )
        ) from None
    return Data(Split(x_train, y_train), test=Split(x_test, y_test))


def read_idx_gz(path: Path, where: Where) -> np.ndarray:
    """Read a gzip'd IDX file (the MNIST family's format): magic gives the rank, then the dims; a broken file is a located problem."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off stream an EOFError
        raise ConfigError(where.problem(("name",), f"cannot read {path}: not a complete gzip file ({exc})", REDOWNLOAD)) from None
    if len(raw) > MAX_IDX_BYTES:
        raise ConfigError(where.problem(("name",), f"cannot read {path}: it holds over {MAX_IDX_BYTES >> 20} MB (limit: IDX file size)"))
    rank = raw[3] if len(raw) >= 4 and raw[:2] == b"\x00\x00" else 0
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    offset = 4 + 4 * rank
    if not rank or raw[2] != 0x08 or len(raw) != offset + int(np.prod(dims, dtype=np.int64)):
        shape = "x".join(map(str, dims)) or "none"
        raise ConfigError(
            where.problem(
                ("name",),
                f"cannot read {path}: not an IDX file of unsigned bytes, or cut off ({len(raw) - offset:,} bytes of data for shape {shape})",
                REDOWNLOAD,
            )
        )
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


MAX_IDX_BYTES = 1 << 30  # Fashion-MNIST's largest file is 47 MB unpacked
REDOWNLOAD = "copy the file again (Keras's own download of it is complete)"
