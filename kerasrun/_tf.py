"""The one place TensorFlow and Keras are imported, with their start-up log noise kept off the terminal."""

import gc
import os
import sys
import tempfile

from kerasrun import startup

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_quietly() -> tuple:
    """Import TensorFlow and Keras with file descriptor 2 parked in a temp file.

    TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, CPU features) are printed before absl
    logging is initialised, so no environment variable hides them; they are replayed on failure.
    """
    if os.environ.get("KERASRUN_DEBUG"):
        import keras
        import tensorflow as tf

        return keras, tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as parked:
        os.dup2(parked.fileno(), 2)
        try:
            import keras
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs too
        except Exception:  # a failed import: its start-up lines may say why (not on Ctrl-C or SIGTERM: nothing to explain)
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return keras, tf


def import_without_gc() -> tuple:
    """Import with the cyclic garbage collector paused, then exempt what the import created from it.

    Importing TensorFlow and Keras creates ~350,000 long-lived objects; full collections while they
    pile up cost ~0.4 s here, and each later full collection rescanned them (~0.17 s). They live until
    exit anyway, so `gc.freeze()` moves them to the permanent generation.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return import_quietly()
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


# The kerasrun command asks for the fast import (cli.main sets FAST_IMPORT); a program that imports kerasrun
# as a library keeps its garbage collector exactly as it was.
keras, tf = import_without_gc() if startup.FAST_IMPORT else import_quietly()

__all__ = ["keras", "tf"]
