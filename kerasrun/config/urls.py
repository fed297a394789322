"""Paths with a scheme (`gs://b/x`) told from local paths, without TensorFlow: a URL stays a string, never a `Path`."""

from __future__ import annotations

import re
from pathlib import Path

SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
COLLAPSED = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:$")  # `gs:` of a Path that collapsed `gs://b/x` (two letters at least: `C:` is a drive)


def url_of(value: str | Path | None) -> str | None:
    """`value` as a URL when it has a scheme (`gs://b/x`, also a Path that collapsed it to `gs:/b/x`), else None."""
    if value is None:
        return None
    text = str(value)
    if isinstance(value, str) and SCHEME.match(text):
        return text.rstrip("/") if text.count("/") > 2 else text
    parts = Path(text).parts
    if len(parts) >= 2 and COLLAPSED.match(parts[0]) and not text.startswith("/"):
        return f"{parts[0]}//{'/'.join(parts[1:])}"
    return None


def scheme(url: str) -> str:
    """The scheme of a URL (`gs`)."""
    match = SCHEME.match(url)
    return match["scheme"].lower() if match else ""


def join(url: str, *names: str) -> str:
    """`url/name/...` without doubled slashes."""
    return "/".join([url.rstrip("/"), *(n.strip("/") for n in names)])
