"""Process-wide set-up that only the `kerasrun` command does, never an import of kerasrun as a library."""

from __future__ import annotations

import os
import sys

RECURSION_LIMIT = 30_000  # enough for model.layers at its schema limit (see config.MAX_LAYERS)
FAST_IMPORT = False  # import TensorFlow with the garbage collector paused, then freeze its objects (kerasrun._tf)


def configure_command_process() -> None:
    """For the command line: the fast TensorFlow import, deep models, and the current directory importable like `python -m`.

    Import paths in a config (`module:name`) then find modules next to where kerasrun runs; a library
    user's sys.path and garbage collector stay untouched.
    """
    global FAST_IMPORT
    FAST_IMPORT = True
    # Keras builds, saves and loads a functional graph by recursion over its layers: with Python's
    # default limit of 1,000 frames a 2,000-layer chain fails with RecursionError.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
