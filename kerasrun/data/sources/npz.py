"""`source: npz`: arrays from a NumPy .npz file, by key (never unpickled)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.data import NpzData
from kerasrun.data.arrays import Data, Split
from kerasrun.data.sources.base import Where
from kerasrun.errors import ConfigError


def read(spec: NpzData, where: Where) -> Data:
    """Arrays from an .npz file, by key."""
    path = where.resolve_path(spec.path)
    if not path.is_file():
        raise ConfigError(where.problem(("path",), f"no such file: {path}"))
    with open_npz(path, where, ("path",)) as arrays:
        keys = sorted(arrays.keys())

        def get(field: str, required: bool) -> Any:
            key = getattr(spec, field)
            if key is None:
                return None
            named = key if isinstance(key, dict) else {None: key}
            missing = [(name, k) for name, k in named.items() if k not in arrays]
            if missing:
                # An optional key names a missing array: an error only when the user chose a name other than the default
                # (a run folder's config spells every default out).
                if required or key != type(spec).model_fields[field].default:
                    raise ConfigError(
                        [
                            where.problem(
                                (field,) + ((name,) if name else ()), f"{path.name} has no array `{k}`", f"it has: {', '.join(keys)}"
                            )
                            for name, k in missing
                        ]
                    )
                return None
            found = {name: arrays[k] for name, k in named.items()}
            for name, k in named.items():
                if not isinstance(found[name], np.ndarray):  # a member that isn't a .npy comes back as raw bytes
                    raise ConfigError(where.problem((field,), f"{path.name}: `{k}` is not a NumPy array"))
            return found if isinstance(key, dict) else found[None]

        x, y = get("x", True), get("y", True)
        sw = get("sample_weight", True)
        x_val, y_val = get("x_val", False), get("y_val", False)
        x_test, y_test = get("x_test", False), get("y_test", False)
    if (x_val is None) != (y_val is None):
        given = "x_val" if x_val is not None else "y_val"
        raise ConfigError(where.problem((given,), f"{path.name} has {given} without its pair; give both or neither"))
    validation = Split(x_val, y_val) if x_val is not None else None
    test = Split(x_test, y_test) if x_test is not None and y_test is not None else None
    return Data(Split(x, y, sw), validation=validation, test=test)


@contextmanager
def open_npz(path: Path, where: Where, loc: tuple[Any, ...]) -> Iterator[Any]:
    """np.load of an .npz (arrays only, never pickles); a file that can't be read is a located problem naming the cause.

    Arrays are read lazily, so errors of a truncated member surface while they are used: the whole
    block is covered.
    """
    with path.open("rb") as f:
        start = f.read(4)
    if start != b"PK\x03\x04":  # every .npz is a zip archive; anything else np.load would try to unpickle
        raise ConfigError(where.problem(loc, f"cannot read {path.name}: it is not a NumPy .npz file (not a zip archive)"))
    try:
        with np.load(path, allow_pickle=False) as arrays:
            yield arrays
    except ConfigError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            why = "it holds pickled Python objects; kerasrun reads plain numeric arrays only (np.savez of NumPy arrays)"
        else:
            why = f"it is not a NumPy .npz file ({exc})"
        raise ConfigError(where.problem(loc, f"cannot read {path.name}: {why}")) from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ConfigError(
            where.problem(loc, f"cannot read {path.name}: not a complete .npz file (truncated, or not a zip archive: {exc})")
        ) from None
    except MemoryError:
        raise ConfigError(where.problem(loc, f"cannot read {path.name}: it declares an array too large to load")) from None
