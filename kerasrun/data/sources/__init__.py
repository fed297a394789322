"""One reader per data source: `kerasrun.data.sources.<source>.read(spec, where)`, where `<source>` is `data.source`.

A new source is one new module here (plus its section's schema class in kerasrun/config/data.py): a `read`
function that takes only its own config section and a `Where`, and returns `Data`.
"""

from __future__ import annotations

import importlib
from typing import Any

from kerasrun.data.arrays import Data
from kerasrun.data.sources.base import Where


def read_source(spec: Any, where: Where) -> Data:
    """Read the data section `spec` with the reader of its `source`."""
    reader = importlib.import_module(f"{__name__}.{spec.source}")
    data: Data = reader.read(spec, where)
    return data
