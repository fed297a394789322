"""Process-wide set-up that only the `kerasrun` command does, never an import of kerasrun as a library."""

from __future__ import annotations

import os
import sys

RECURSION_LIMIT = 30_000  # enough for model.layers at its schema limit (see config.MAX_LAYERS)
FAST_IMPORT = False  # import TensorFlow with the garbage collector paused, then freeze its objects (kerasrun._tf)
COMMAND = False  # set by the kerasrun command: only then do config folders become importable


def configure_command_process() -> None:
    """For the command line: the fast TensorFlow import, deep models, and the current directory importable like `python -m`.

    Import paths in a config (`module:name`) then find modules next to where kerasrun runs; a library
    user's sys.path and garbage collector stay untouched.
    """
    global FAST_IMPORT, COMMAND
    FAST_IMPORT = COMMAND = True
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
