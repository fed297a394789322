"""`package.module:name` import paths → Python objects (the one way a config names code), and "did you mean" hints."""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class SpecError(Exception):
    """A spec could not be resolved; carries the message and an optional hint."""

    def __init__(self, message: str, hint: str | None = None, loc: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.hint = hint
        self.loc = loc


def import_object(path: str) -> Any:
    """Import `package.module:name` (dots after the colon walk attributes)."""
    if not IMPORT_PATH.match(path):
        raise SpecError(f"expected an import path `package.module:name`, got {path!r}")
    module_name, attr_path = path.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"cannot import module `{module_name}`: {exc}", hint="is it installed, or on PYTHONPATH?") from None
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            public = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, public, n=1)
            raise SpecError(f"module `{module_name}` has no attribute `{attr}`", hint=f"did you mean `{close[0]}`?" if close else None)
        obj = getattr(obj, attr)
    return obj


def suggest(name: str, candidates: list[str]) -> str | None:
    """A 'did you mean' hint, matching case-insensitively."""
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{lowered[c]}`" for c in close) + "?"
