"""Process-wide set-up that only the `kerasrun` command does, never an import of kerasrun as a library."""

from __future__ import annotations

import ctypes
import os
import sys

try:
    import resource
except ImportError:  # not a Unix: no address-space limit to read
    resource = None  # type: ignore[assignment]

RECURSION_LIMIT = 30_000  # enough for model.layers at its schema limit (see config.MAX_LAYERS)
FAST_IMPORT = False  # import TensorFlow with the garbage collector paused, then freeze its objects (kerasrun._tf)
COMMAND = False  # set by the kerasrun command: only then do config folders become importable
M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)
# Under `ulimit -v`, glibc's malloc arenas are the largest waste of address space: each reserves 64 MiB up front and
# glibc allows 8 per core (16 here: 1 GiB of a 3 GiB limit). Two arenas took a mirrored MNIST run from 3,638 to 2,745 MiB.
ARENAS_UNDER_LIMIT = 2
ARENAS_CAPPED = False  # whether configure_command_process capped them (for the address-space warning)


def configure_command_process() -> None:
    """For the command line: the fast TensorFlow import, deep models, and the current directory importable like `python -m`.

    Import paths in a config (`module:name`) then find modules next to where kerasrun runs; a library
    user's sys.path and garbage collector stay untouched.
    """
    global FAST_IMPORT, COMMAND, ARENAS_CAPPED
    FAST_IMPORT = COMMAND = True
    ARENAS_CAPPED = cap_malloc_arenas()
    # Keras builds, saves and loads a functional graph by recursion over its layers: with Python's
    # default limit of 1,000 frames a 2,000-layer chain fails with RecursionError.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def make_config_folder_importable(folder: str) -> None:
    """For the command line: a config's own folder importable after the current directory (which wins a name clash).

    So `module:name` in a config finds a module next to the config, wherever kerasrun is run from —
    the rule data paths already follow. Never for a run folder's config: a run folder holds no code.
    """
    if COMMAND and folder not in sys.path:
        sys.path.append(folder)


def address_space_limit() -> int | None:
    """The soft address-space limit (`ulimit -v`, RLIMIT_AS) in bytes, or None when there is none."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def cap_malloc_arenas() -> bool:
    """Under an address-space limit, let glibc's malloc use ARENAS_UNDER_LIMIT arenas; whether it was capped.

    Must run before TensorFlow starts its threads: glibc fixes the number of arenas when it first needs more than
    eight. MALLOC_ARENA_MAX in the environment (the same setting, read by glibc itself) wins.
    """
    if address_space_limit() is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS has no mallopt)
        return False
    return bool(mallopt(M_ARENA_MAX, ARENAS_UNDER_LIMIT))
