"""Whether an optional package (one of kerasrun's extras) is usable here: the one probe, asked without importing TensorFlow."""

from __future__ import annotations

import importlib
import importlib.util


def package_problem(package: str, deep: bool = False) -> str | None:
    """None when `package` can be imported; else why not. `deep` imports it (train), else only finds it (validate: fast)."""
    try:
        if deep:
            importlib.import_module(package)
        elif importlib.util.find_spec(package) is None:
            return "is not installed"
    except ImportError as exc:  # also an import hook or a broken install that refuses it
        return f"cannot be imported ({exc})"
    except Exception as exc:  # a broken installation fails in its own ways
        return f"cannot be imported ({type(exc).__name__}: {exc})"
    return None


def is_installed(package: str) -> bool:
    """Whether `package` can be found (without importing it)."""
    return package_problem(package) is None
