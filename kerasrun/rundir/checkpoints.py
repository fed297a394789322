"""Checkpoint files in a run folder: `checkpoints/epoch-NNNN.npz`, arrays and one JSON member, never pickles.

`epoch-NNNN.npz` is taken after NNNN complete epochs; `epoch-NNNN-step-SSSSSS.npz` inside epoch NNNN (0-based)
after SSSSSS of its steps, when a stop signal arrived mid-epoch (kerasrun.train.preemption).

A checkpoint holds everything that decides the next epoch (see `kerasrun.train.checkpoint`, which
captures and restores it); this module only writes, lists and reads the files.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasrun.errors import RunFailedError
from kerasrun.rundir.io import write_atomic
from kerasrun.rundir.layout import CHECKPOINT_DIR

if TYPE_CHECKING:  # NumPy is imported where a file is read or written: listing run folders needs none of it
    import numpy as np

FILE_PATTERN = re.compile(r"^epoch-(\d+)(?:-step-(\d+))?\.npz$")
META_KEY = "meta.json"  # the JSON half of a checkpoint, stored as bytes inside the .npz
# 2: each callback's state as tagged JSON (tuples, dicts, NumPy scalars, arrays of any rank, tensors keep
# their types) and the names of what could not be held; 1: plain JSON values plus single arrays or lists of them.
FORMAT = 2
READABLE = (1, 2)  # a run checkpointed by the previous kerasrun still resumes


@dataclass
class TrainingState:
    """A snapshot taken at the end of an epoch (`epoch` epochs are complete) or inside one (`step` steps of epoch `epoch` too)."""

    epoch: int
    history: dict[str, list[Any]]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    step: int = 0  # > 0: a mid-epoch checkpoint, which also holds the epoch's running metric states

    @property
    def where(self) -> str:
        """Where training stands, in words: `epoch 3` (3 complete) or `step 40 of epoch 4` (1-based epoch)."""
        return f"step {self.step} of epoch {self.epoch + 1}" if self.step else f"epoch {self.epoch}"


def variable_name(variable: Any) -> str:
    """A variable's path in the model (`dense/kernel`), to check a checkpoint against the model it is restored into."""
    return str(getattr(variable, "path", None) or getattr(variable, "name", "?"))


def checkpoint_dir(run_dir: Path) -> Path:
    """The run folder's checkpoints/ folder."""
    return Path(run_dir) / CHECKPOINT_DIR


def write(run_dir: Path, state: TrainingState, keep: int) -> Path:
    """Write `epoch-NNNN[-step-SSSSSS].npz` atomically (temp file, fsync, rename), then drop all but the `keep` latest."""
    import numpy as np

    folder = checkpoint_dir(run_dir)
    folder.mkdir(exist_ok=True)
    path = folder / (f"epoch-{state.epoch:04d}-step-{state.step:06d}.npz" if state.step else f"epoch-{state.epoch:04d}.npz")
    meta = dict(state.meta, history=state.history)
    payload = dict(state.arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)  # JSON keeps inf (EarlyStopping's best)
    write_atomic(path, lambda f: np.savez(f, allow_pickle=False, **payload))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint files, oldest first (a temp file of an interrupted write never matches)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [((int(m.group(1)), int(m.group(2) or 0)), p) for p in folder.iterdir() if (m := FILE_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read(path: Path) -> TrainingState:
    """Load a checkpoint file (arrays only: never unpickles)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    if meta.get("format") not in READABLE:
        raise RunFailedError(f"{path} is a checkpoint format this kerasrun cannot read ({meta.get('format')})")
    return TrainingState(int(meta["epoch"]), meta.pop("history"), arrays, meta, int(meta.get("step", 0)))


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete temp files of writes a killed process never finished (`.model.tmp*`, `.*.tmp`); return them."""
    run_dir = Path(run_dir)
    candidates = [*run_dir.glob(".*.tmp"), *run_dir.glob(".model.tmp*"), *checkpoint_dir(run_dir).glob(".*.tmp")]
    for path in candidates:
        with contextlib.suppress(OSError):
            path.unlink()
    return candidates
