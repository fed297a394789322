"""Address-space limits (`ulimit -v`): a warning before training, and what a failure says when memory ran out."""

from __future__ import annotations

from pathlib import Path

from kerasrun import startup
from kerasrun._tf import tf

MIB = 2**20
# How much a run's address space grew after the experiment was prepared, measured on 2 cores with glibc's arenas
# capped (digits, MNIST MLP, MNIST CNN): 160-190 MiB on one device, 520-770 MiB under `mirrored` on two logical
# CPUs, mostly 8 MiB thread stacks (about 40 more threads) and the replicas' copy of the input pipeline.
GROWTH_ONE_DEVICE = 200 * MIB
GROWTH_PER_EXTRA_REPLICA = 600 * MIB
DOCS = "docs/devices.md#memory-limits"
# A TensorFlow error counts as caused by the limit only when the process came this close to it (a failed mmap
# leaves VmPeak below the limit by the size it asked for: oneDNN and thread stacks ask for a few MiB).
NEAR_LIMIT = 0.9


def reserved_bytes(field: str = "VmSize") -> int | None:
    """This process's address space now (VmSize, or VmPeak: its largest), from /proc/self/status; None where it can't be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib(size: int) -> str:
    """A byte count as `2.8 GiB`."""
    return f"{size / 2**30:.1f} GiB"


def address_space_warning(replicas: int) -> str | None:
    """One line when `ulimit -v` is below what this run will likely reserve; None without a limit or with room to spare."""
    limit, now = startup.address_space_limit(), reserved_bytes()
    if limit is None or now is None:
        return None
    growth = GROWTH_ONE_DEVICE + GROWTH_PER_EXTRA_REPLICA * max(replicas - 1, 0)
    if now + growth <= limit:
        return None
    return (
        f"the address space is limited to {gib(limit)} (ulimit -v) and this run will likely need about {gib(now + growth)} "
        f"({gib(now)} reserved before training, runs like it grew by up to {gib(growth)} with {replicas} replica(s)): "
        "TensorFlow then aborts the process (SIGABRT or SIGSEGV, which kerasrun cannot catch) and `kerasrun runs` shows "
        f"the run as crashed; raise the limit or use fewer replicas ({DOCS})"
    )


def out_of_memory_hint(exc: BaseException) -> str | None:
    """Why a failure Python sees is likely a lack of memory: a MemoryError or ResourceExhaustedError, or a TensorFlow error near `ulimit -v`."""
    limit, peak = startup.address_space_limit(), reserved_bytes("VmPeak")
    near = limit is not None and peak is not None and peak >= NEAR_LIMIT * limit
    limited = f"the address space reached {gib(peak or 0)} of its {gib(limit or 0)} limit (ulimit -v)" if near else None
    if isinstance(exc, (MemoryError, tf.errors.ResourceExhaustedError)):
        return f"out of memory; {limited}" if limited else "out of memory"
    if limited and isinstance(exc, tf.errors.OpError):  # e.g. oneDNN's "could not execute a primitive" when its mmap fails
        return f"{limited}, the likely cause ({DOCS})"
    return None
